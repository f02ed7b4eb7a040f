//! The ProductHook client: one lazily connected channel per product, reused for every call,
//! each call bounded by a deadline.
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::domain::lifecycle::{ContentDeletion, LifecycleEvent, UserDeletion, system_owner_id};
use crate::product_pb::{self as ppb, product_hook_client::ProductHookClient};
use crate::tasks::{BoxFuture, ProductCall, Products};

pub struct ProductClients {
    clients: Vec<(String, ProductHookClient<Channel>)>,
    timeout: Duration,
}

impl ProductClients {
    /// `products` are `name=endpoint` pairs (e.g. `chat=http://chat:50051`).
    pub fn new(products: &[String], timeout: Duration) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(products.len());
        for entry in products {
            let (name, url) = entry
                .split_once('=')
                .filter(|(name, url)| !name.is_empty() && !url.is_empty())
                .ok_or_else(|| anyhow::anyhow!("product {entry:?} is not name=endpoint"))?;
            if clients.iter().any(|(n, _)| n == name) {
                anyhow::bail!("product {name:?} is configured twice");
            }
            let channel = Endpoint::from_shared(url.to_owned())?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy();
            clients.push((name.to_owned(), ProductHookClient::new(channel)));
        }
        Ok(ProductClients { clients, timeout })
    }
}

impl Products for ProductClients {
    fn names(&self) -> Vec<String> {
        self.clients.iter().map(|(name, _)| name.clone()).collect()
    }

    fn call<'a>(
        &'a self,
        product: &'a str,
        call: &'a ProductCall,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut client = self
                .clients
                .iter()
                .find(|(name, _)| name == product)
                .map(|(_, client)| client.clone())
                .ok_or_else(|| format!("product {product} is not configured"))?;
            let mut request = tonic::Request::new(request(call));
            request.set_timeout(self.timeout);
            match client.handle_user_event(request).await {
                Ok(_) => Ok(()),
                Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
            }
        })
    }
}

fn request(call: &ProductCall) -> ppb::HandleUserEventRequest {
    let o = &call.options;
    let content = |mode: Option<ContentDeletion>| match mode {
        None => ppb::ContentDeletion::Unspecified,
        Some(ContentDeletion::Soft) => ppb::ContentDeletion::Soft,
        Some(ContentDeletion::Pruning) => ppb::ContentDeletion::Pruning,
        Some(ContentDeletion::Hard) => ppb::ContentDeletion::Hard,
    } as i32;
    let mut options = ppb::LifecycleOptions::default();
    let event = match call.event {
        LifecycleEvent::Deactivated => {
            options.mark_messages_deleted = o.mark_messages_deleted;
            options.mark_channels_deleted = o.mark_channels_deleted;
            ppb::UserEvent::Deactivated
        }
        LifecycleEvent::Reactivated => {
            options.restore_messages = o.restore_messages;
            options.restore_channels = o.restore_channels;
            ppb::UserEvent::Reactivated
        }
        LifecycleEvent::Deleted => {
            let d = o.delete.clone().unwrap_or_default();
            options.user = match d.user {
                UserDeletion::Soft => ppb::UserDeletion::Soft,
                UserDeletion::Pruning => ppb::UserDeletion::Pruning,
                UserDeletion::Hard => ppb::UserDeletion::Hard,
            } as i32;
            options.messages = content(d.messages);
            options.conversations = content(d.conversations);
            options.calls = content(d.calls);
            options.files = d.files;
            options.new_channel_owner_id = d
                .new_channel_owner_id
                .unwrap_or_else(|| system_owner_id(&call.user_id));
            options.new_call_owner_id = d
                .new_call_owner_id
                .unwrap_or_else(|| system_owner_id(&call.user_id));
            ppb::UserEvent::Deleted
        }
        LifecycleEvent::Restored => ppb::UserEvent::Restored,
    };
    ppb::HandleUserEventRequest {
        idempotency_key: call.idempotency_key.clone(),
        event: event as i32,
        user_id: call.user_id.clone(),
        task_id: call.task_id.clone(),
        options: Some(options),
        created_by_id: o.created_by_id.clone(),
    }
}
