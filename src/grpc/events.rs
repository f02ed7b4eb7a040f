//! `roster.v1.EventService`: the change feed as a server stream.
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::convert::{self, timestamp};
use crate::domain::event::{Event, EventFilter, EventKind};
use crate::domain::presence::{AsOf, Presence};
use crate::error::Error;
use crate::feed::Follower;
use crate::pb::{self, event_service_server::EventService};
use crate::store::Store;
use crate::tasks::Hub;
use tokio_util::task::TaskTracker;

pub struct EventApi {
    store: Store,
    hub: Hub,
    /// Where the loops feeding WatchUserEvents streams run, so the server waits for them (and
    /// their last reads) before it closes the pool.
    tasks: TaskTracker,
}

impl EventApi {
    pub fn new(store: Store, hub: Hub, tasks: &TaskTracker) -> Self {
        EventApi {
            store,
            hub,
            tasks: tasks.clone(),
        }
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
        let req = request.into_inner();
        if req.after_sequence < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative").into());
        }
        let mut kinds = Vec::with_capacity(req.kinds.len());
        for (i, kind) in req.kinds.iter().enumerate() {
            kinds.push(EventKind::parse(kind).ok_or_else(|| {
                Error::invalid(
                    format!("kinds[{i}]"),
                    format!("unknown event kind {kind:?}"),
                )
            })?);
        }
        let filter = EventFilter {
            kinds,
            user_ids: req.user_ids,
        };
        let mut follower = Follower::start(
            self.store.clone(),
            self.hub.clone(),
            req.after_sequence,
            filter,
        )
        .await?;
        let presence = self.store.presence();
        let (tx, rx) = mpsc::channel(64);
        self.tasks.spawn(async move {
            loop {
                let next = tokio::select! {
                    () = tx.closed() => return,
                    next = follower.next() => next,
                };
                match next {
                    Ok(Some(events)) => {
                        for e in events {
                            let item = pb::WatchUserEventsResponse {
                                event: Some(event(e, presence)),
                            };
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "roster is shutting down; resume from the last sequence received",
                            )))
                            .await;
                        return;
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
