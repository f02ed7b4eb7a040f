//! Following the change feed: replay from a sequence, then follow live, never skipping an event
//! that a slower transaction has yet to commit (see `store::events` for why gaps happen).
use std::time::Duration;

use crate::bus::Bus;
use crate::domain::event::{Event, EventFilter};
use crate::error::{Error, Result};
use crate::store::Store;

/// Events read per round trip.
const PAGE: u64 = 500;
/// How often an idle follower looks for events committed by other replicas.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

pub struct Follower {
    store: Store,
    bus: Bus,
    filter: EventFilter,
    /// The last sequence delivered (or passed over as permanently missing).
    cursor: i64,
    /// Every sequence up to this one that will ever exist is committed: gaps below are final.
    settled_through: i64,
}

/// A follower asking to resume before the purge horizon would silently miss events.
fn purged(after: i64, purged_through: i64) -> Option<Error> {
    (after < purged_through).then_some(Error::EventsPurged {
        after,
        purged_through,
    })
}

impl Follower {
    /// A follower that will deliver the events after `after`; 0 means "everything still kept".
    pub async fn start(store: Store, bus: Bus, after: i64, filter: EventFilter) -> Result<Self> {
        let purged_through = store.events_purged_through().await?;
        let after = if after == 0 { purged_through } else { after };
        if let Some(err) = purged(after, purged_through) {
            return Err(err);
        }
        Ok(Follower {
            store,
            bus,
            filter,
            cursor: after,
            settled_through: after,
        })
    }

    /// The next events to deliver, in order; waits until there is at least one. `None` once the
    /// server shuts down.
    pub async fn next(&mut self) -> Result<Option<Vec<Event>>> {
        let mut local = self.bus.events_watch();
        loop {
            if self.bus.is_shutting_down() {
                return Ok(None);
            }
            let poll = self.poll().await?;
            if !poll.delivered.is_empty() {
                return Ok(Some(poll.delivered));
            }
            if poll.more {
                continue;
            }
            tokio::select! {
                _ = local.changed() => {}
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                () = self.bus.shutting_down() => return Ok(None),
            }
        }
    }

    /// One read: the contiguous events after the cursor; at a gap, waits for the writers in
    /// flight, after which the gap is final.
    async fn poll(&mut self) -> Result<Poll> {
        let events = self.store.read_events(self.cursor, PAGE).await?;
        let full = events.len() as u64 == PAGE;
        let last_seen = events.last().map(|e| e.sequence);
        let mut delivered = Vec::new();
        for event in events {
            if event.sequence != self.cursor + 1 && event.sequence > self.settled_through {
                // Retention may have passed us by; that must be said, not skipped.
                if let Some(err) = purged(self.cursor, self.store.events_purged_through().await?) {
                    return Err(err);
                }
                if delivered.is_empty() {
                    // Nothing deliverable before the gap: settle it now.
                    self.store.wait_for_event_writers().await?;
                    self.settled_through = last_seen.unwrap_or(self.settled_through);
                }
                return Ok(Poll {
                    delivered,
                    more: true,
                });
            }
            self.cursor = event.sequence;
            if self.filter.matches(&event) {
                delivered.push(event);
            }
        }
        Ok(Poll {
            delivered,
            more: full,
        })
    }
}

struct Poll {
    delivered: Vec<Event>,
    /// Read again at once: the page was full, or a gap was just settled.
    more: bool,
}
