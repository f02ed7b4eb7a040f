//! `roster.v1.EventService`: the change feed as a server stream.
use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, timestamp};
use crate::app::App;
use crate::domain::event::Event;
use crate::domain::presence::{AsOf, Presence};
use crate::grpc::pb::{self, event_service_server::EventService};

pub struct EventApi {
    app: App,
}

impl EventApi {
    pub fn new(app: App) -> Self {
        EventApi { app }
    }
}

/// An event as followers receive it. Its user is judged (bans, presence) at the event's time.
fn event(e: Event, presence: Presence) -> pb::UserChangeEvent {
    let as_of = AsOf { at: e.at, presence };
    pb::UserChangeEvent {
        sequence: e.sequence,
        kind: e.kind.as_str().to_owned(),
        user_id: e.user_id,
        actor: e.actor.name().to_owned(),
        caller: e.actor.caller,
        created_by_id: e.actor.created_by_id,
        at: Some(timestamp(e.at)),
        user: e.user.map(|u| convert::user(u, as_of)),
        role: e.role,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchUserEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchUserEventsStream = EventStream;

    async fn watch_user_events(
        &self,
        request: Request<pb::WatchUserEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let events = self
            .app
            .watch_events(&caller, req.after_sequence, &req.kinds, req.user_ids)
            .await?;
        let presence = self.app.presence();
        Ok(Response::new(Box::pin(events.map(move |e| {
            e.map(|e| pb::WatchUserEventsResponse {
                event: Some(event(e, presence)),
            })
            .map_err(Status::from)
        }))))
    }
}
