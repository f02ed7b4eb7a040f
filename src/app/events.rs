//! The change feed, followed as a stream.
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::event::{Event, EventFilter, EventKind};
use crate::error::{Error, Result};
use crate::feed::Follower;

/// The events after a sequence, in order, then live; ends with [`Error::ShuttingDown`] when
/// roster shuts down (resume from the last sequence received).
pub type EventStream = ReceiverStream<Result<Event>>;

impl App {
    /// WatchUserEvents: events after `after_sequence` (0: everything still kept) of the given
    /// kinds (all when empty) and users (all when empty).
    pub async fn watch_events(
        &self,
        caller: &Caller,
        after_sequence: i64,
        kinds: &[String],
        user_ids: Vec<String>,
    ) -> Result<EventStream> {
        self.admit(caller, Scope::EventsRead)?;
        if after_sequence < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative"));
        }
        let mut parsed = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            parsed.push(EventKind::parse(kind).ok_or_else(|| {
                Error::invalid(
                    format!("kinds[{i}]"),
                    format!("unknown event kind {kind:?}"),
                )
            })?);
        }
        let filter = EventFilter {
            kinds: parsed,
            user_ids,
        };
        let mut follower =
            Follower::start(self.store.clone(), self.bus.clone(), after_sequence, filter).await?;
        let (tx, rx) = mpsc::channel(64);
        self.background.spawn(async move {
            loop {
                let next = tokio::select! {
                    () = tx.closed() => return,
                    next = follower.next() => next,
                };
                match next {
                    Ok(Some(events)) => {
                        for event in events {
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        let why = "roster is shutting down; resume from the last sequence received";
                        let _ = tx.send(Err(Error::ShuttingDown(why))).await;
                        return;
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
