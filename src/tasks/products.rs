//! Telling products what happened to a user. The worker only knows this trait; the gRPC client
//! that implements it lives in `grpc::product_client`.
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::domain::lifecycle::LifecycleEvent;
use crate::domain::task::LifecycleV1;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One call to one product: the event for one user of one task.
#[derive(Debug, Clone)]
pub struct ProductCall {
    /// `<task_id>:<user_id>:<event>`: the same on every repetition.
    pub idempotency_key: String,
    pub event: LifecycleEvent,
    pub user_id: String,
    pub task_id: String,
    pub options: LifecycleV1,
}

impl ProductCall {
    pub fn new(task_id: &str, user_id: &str, event: LifecycleEvent, options: &LifecycleV1) -> Self {
        ProductCall {
            idempotency_key: format!("{task_id}:{user_id}:{}", event.as_str()),
            event,
            user_id: user_id.to_owned(),
            task_id: task_id.to_owned(),
            options: options.clone(),
        }
    }
}

/// The configured products.
pub trait Products: Send + Sync {
    /// Product names, in configuration order.
    fn names(&self) -> Vec<String>;
    /// Calls one product once; `Err` carries a short reason.
    fn call<'a>(
        &'a self,
        product: &'a str,
        call: &'a ProductCall,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// No products configured: lifecycle tasks touch roster's own data only.
pub struct NoProducts;

impl Products for NoProducts {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    fn call<'a>(&'a self, _: &'a str, _: &'a ProductCall) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// How hard to try a failing product.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub retries: u32,
    /// Wait before the first retry; doubled each time, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            retries: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(5), Duration::from_secs(1));
        assert_eq!(p.delay(40), Duration::from_secs(1));
    }

    #[test]
    fn idempotency_key_is_task_user_event() {
        let call = ProductCall::new("t1", "u1", LifecycleEvent::Deleted, &LifecycleV1::default());
        assert_eq!(call.idempotency_key, "t1:u1:deleted");
    }
}
