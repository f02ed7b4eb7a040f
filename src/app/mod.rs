//! The application layer: what roster does, one method per use case, for every front door.
//!
//! A door (`grpc/`, and later `http/`) converts its wire types into domain inputs and calls one
//! method here. The method applies the rules of `domain`, calls `store`, and tells the bus what
//! changed (waking the worker and the feed's followers). Nothing here knows a wire format, and no
//! door decides a rule. One module per use-case group.
use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::domain::access::{Caller, Scope};
use crate::domain::presence::{AsOf, Presence};
use crate::domain::token::UserTokens;
use crate::store::Store;
use crate::tasks::watch::Watcher;

mod devices;
mod events;
mod lifecycle;
mod moderation;
mod roles;
mod tasks;
mod tokens;
mod users;

pub use events::EventStream;
pub use moderation::BlockOf;
pub use tasks::TaskPage;
pub use users::{IdRange, QueryRequest};

pub use crate::tasks::watch::TaskStream;

/// roster's use cases over one store. Cheap to clone: each door holds one.
#[derive(Clone)]
pub struct App {
    store: Store,
    bus: Bus,
    /// `None` when no user-token secret is configured.
    tokens: Option<Arc<UserTokens>>,
    watcher: Watcher,
    /// Where the loops feeding streams run, so the server waits for them before it closes the
    /// pool.
    background: TaskTracker,
}

impl App {
    /// Starts, on `background`, what the use cases need running (the loop that notices task
    /// changes made by other replicas); it stops when the bus shuts down.
    pub fn new(
        store: Store,
        bus: Bus,
        tokens: Option<UserTokens>,
        background: &TaskTracker,
    ) -> Self {
        let watcher = Watcher::new(store.clone(), bus.clone(), background);
        App {
            store,
            bus,
            tokens: tokens.map(Arc::new),
            watcher,
            background: background.clone(),
        }
    }

    /// What every use case checks first: the caller holds `scope`, and the database is not
    /// known to be down (then the call is refused at once instead of waiting for a connection).
    fn admit(&self, caller: &Caller, scope: Scope) -> crate::error::Result<()> {
        caller.require(scope)?;
        self.store.fail_fast()
    }

    /// The instant and presence rules an answer's users are shown with (a ban in force, online).
    pub fn as_of_now(&self) -> AsOf {
        self.store.as_of_now()
    }

    /// How presence is judged, for users shown as of another instant (feed events).
    pub fn presence(&self) -> Presence {
        self.store.presence()
    }
}
