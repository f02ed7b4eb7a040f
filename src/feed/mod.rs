//! Following the change feed: replay from a sequence, then follow live, never skipping an event
//! that a slower transaction has yet to commit (see `store::events` for why gaps happen).
use std::time::Duration;

use crate::domain::event::{Event, EventFilter};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::tasks::Hub;

/// Events read per round trip.
const PAGE: u64 = 500;
/// How often an idle follower looks for events committed by other replicas.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a follower waiting on a gap checks whether the transactions that could fill it ended.
const GAP_POLL: Duration = Duration::from_millis(20);

pub struct Follower {
    store: Store,
    hub: Hub,
    filter: EventFilter,
    /// The last sequence delivered (or skipped as permanently missing).
    cursor: i64,
    /// Every sequence up to this one that will ever exist is committed: gaps below are final.
    settled_through: i64,
    /// A gap seen below `.0`, in a read whose snapshot `xmax` was `.1`.
    pending_gap: Option<(i64, i64)>,
}

/// Why a follower cannot start where it was asked to.
pub fn purged(after: i64, purged_through: i64) -> Option<Error> {
    (after < purged_through).then(|| Error::EventsPurged {
        after,
        purged_through,
    })
}

impl Follower {
    /// A follower that will deliver the events after `after`.
    pub async fn start(store: Store, hub: Hub, after: i64, filter: EventFilter) -> Result<Self> {
        if let Some(err) = purged(after, store.events_purged_through().await?) {
            return Err(err);
        }
        Ok(Follower {
            store,
            hub,
            filter,
            cursor: after,
            settled_through: after,
            pending_gap: None,
        })
    }

    /// The next events to deliver, in order; waits until there is at least one (or shutdown).
    pub async fn next(&mut self) -> Result<Option<Vec<Event>>> {
        let mut local = self.hub.events_watch();
        loop {
            if self.hub.is_shutting_down() {
                return Ok(None);
            }
            let (delivered, waiting_on_gap) = self.poll().await?;
            if !delivered.is_empty() {
                return Ok(Some(delivered));
            }
            let pause = if waiting_on_gap {
                GAP_POLL
            } else {
                FOLLOW_POLL
            };
            tokio::select! {
                _ = local.changed() => {}
                () = tokio::time::sleep(pause) => {}
                () = self.hub.shutting_down() => return Ok(None),
            }
        }
    }

    /// One read: the contiguous events after the cursor (and, once a gap has settled, the events
    /// beyond it). Returns the deliverable events, filtered, and whether a gap is pending.
    async fn poll(&mut self) -> Result<(Vec<Event>, bool)> {
        if let Some((seen_through, xmax)) = self.pending_gap {
            match self.store.oldest_running_xid().await? {
                Some(xmin) if xmin < xmax => return Ok((Vec::new(), true)),
                _ => {
                    self.settled_through = self.settled_through.max(seen_through);
                    self.pending_gap = None;
                }
            }
        }
        let page = self.store.read_events(self.cursor, PAGE).await?;
        let mut out = Vec::new();
        let last = page.events.last().map(|e| e.sequence);
        for event in page.events {
            let contiguous = event.sequence == self.cursor + 1;
            // SQLite commits in sequence order: a gap there never fills later.
            if contiguous || event.sequence <= self.settled_through || page.snapshot_xmax.is_none()
            {
                self.cursor = event.sequence;
                if self.filter.matches(&event) {
                    out.push(event);
                }
            } else {
                if let (Some(last), Some(xmax)) = (last, page.snapshot_xmax) {
                    self.pending_gap = Some((last, xmax));
                }
                if out.is_empty() {
                    // The feed may have been purged past us while we were away.
                    if let Some(err) =
                        purged(self.cursor, self.store.events_purged_through().await?)
                    {
                        return Err(err);
                    }
                }
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }
}
