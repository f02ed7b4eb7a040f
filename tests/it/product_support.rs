//! Support for the product fan-out and change-feed tests: a fake product (a `ProductHook` server
//! inside the test, on `127.0.0.1:0`) that records every call, a change-feed follower whose reads
//! are bounded by deadlines, and a raw connection to the test database for the cases the API
//! cannot construct (a transaction held open, a purge).
//!
//! Servers (in process with a chosen `Config`, or the real binary) come from `task_support`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster::pb::event_service_client::EventServiceClient;
use roster::pb::{UserChangeEvent, WatchUserEventsRequest, WatchUserEventsResponse};
use roster::product_pb::product_hook_server::{ProductHook, ProductHookServer};
use roster::product_pb::{HandleUserEventRequest, HandleUserEventResponse};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

use crate::task_support::on_postgres;

// ---------------------------------------------------------------------------------------------
// The fake product

/// How a fake product answers. The default answers OK at once.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Answer UNAVAILABLE to the first `fail_first` attempts of every idempotency key.
    pub fail_first: u32,
    /// Answer INTERNAL to every call.
    pub always_fail: bool,
    /// Sleep this long before answering (every call).
    pub delay: Duration,
    /// Sleep `hang` before answering the first `hang_first` attempts of every key (longer than
    /// roster's per-call deadline: roster gives up first).
    pub hang_first: u32,
    pub hang: Duration,
    /// Sleep `slow` before answering every call from the `slow_from`-th on (1-based, counting
    /// all calls); 0: never.
    pub slow_from: usize,
    pub slow: Duration,
}

/// One call the fake product received.
#[derive(Debug, Clone)]
pub struct Call {
    pub request: HandleUserEventRequest,
    /// When it arrived.
    pub at: Instant,
    /// 1 for the first call with this idempotency key, 2 for the second, ...
    pub attempt: u32,
}

struct State {
    behavior: Behavior,
    calls: Mutex<Vec<Call>>,
    attempts: Mutex<BTreeMap<String, u32>>,
    /// Bumped on every call, so that waiters need no polling interval.
    count: watch::Sender<usize>,
}

#[derive(Clone)]
struct Hook(Arc<State>);

#[tonic::async_trait]
impl ProductHook for Hook {
    async fn handle_user_event(
        &self,
        request: Request<HandleUserEventRequest>,
    ) -> Result<Response<HandleUserEventResponse>, Status> {
        let state = &self.0;
        let request = request.into_inner();
        let attempt = {
            let mut attempts = state.attempts.lock().expect("attempts lock");
            let n = attempts.entry(request.idempotency_key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let n = {
            let mut calls = state.calls.lock().expect("calls lock");
            calls.push(Call {
                request,
                at: Instant::now(),
                attempt,
            });
            let n = calls.len();
            state.count.send_replace(n);
            n
        };
        let b = &state.behavior;
        if b.slow_from > 0 && n >= b.slow_from {
            tokio::time::sleep(b.slow).await;
        }
        if attempt <= b.hang_first {
            tokio::time::sleep(b.hang).await;
        }
        if !b.delay.is_zero() {
            tokio::time::sleep(b.delay).await;
        }
        if b.always_fail {
            return Err(Status::internal("the fake product always fails"));
        }
        if attempt <= b.fail_first {
            return Err(Status::unavailable(format!(
                "the fake product fails attempt {attempt}"
            )));
        }
        Ok(Response::new(HandleUserEventResponse {}))
    }
}

/// A `ProductHook` server inside the test. Dropping it stops it.
pub struct FakeProduct {
    name: String,
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl FakeProduct {
    /// A product that answers OK at once.
    pub async fn start(name: &str) -> Self {
        Self::with(name, Behavior::default()).await
    }

    pub async fn with(name: &str, behavior: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake product on 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake product address");
        let (count, _) = watch::channel(0);
        let state = Arc::new(State {
            behavior,
            calls: Mutex::new(Vec::new()),
            attempts: Mutex::new(BTreeMap::new()),
            count,
        });
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let service = ProductHookServer::new(Hook(state.clone()));
        let server = tokio::spawn(async move {
            let result = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("fake product server ended with {e}");
            }
        });
        FakeProduct {
            name: name.to_owned(),
            addr,
            state,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name=http://127.0.0.1:port`, as `--products` takes it.
    pub fn spec(&self) -> String {
        format!("{}=http://{}", self.name, self.addr)
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().expect("calls lock").clone()
    }

    pub fn call_count(&self) -> usize {
        *self.state.count.borrow()
    }

    /// The calls for one user, in arrival order.
    pub fn calls_for(&self, user_id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.request.user_id == user_id)
            .collect()
    }

    /// Waits until at least `n` calls arrived; panics after `within`.
    pub async fn wait_for_calls(&self, n: usize, within: Duration) {
        let mut rx = self.state.count.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|count| *count >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "product {} received {} calls within {within:?}, expected at least {n}",
            self.name,
            self.call_count()
        );
    }
}

impl Drop for FakeProduct {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// `name=http://127.0.0.1:port` where nothing listens (the port was bound, then released).
pub fn unreachable_product(name: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("{name}=http://{addr}")
}

/// roster's system owner for a deleted user, computed independently of the server:
/// `delete-user-<first 16 hex digits of SHA-256 of the user id>`.
pub fn system_owner(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("delete-user-{hex}")
}

// ---------------------------------------------------------------------------------------------
// The change feed

pub fn events_client(channel: &Channel) -> EventServiceClient<Channel> {
    EventServiceClient::new(channel.clone())
}

pub fn watch_request(after: i64, kinds: &[&str], user_ids: &[&str]) -> WatchUserEventsRequest {
    WatchUserEventsRequest {
        after_sequence: after,
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        user_ids: user_ids.iter().map(|u| (*u).to_owned()).collect(),
    }
}

/// An open `WatchUserEvents` stream.
pub struct Feed {
    stream: Streaming<WatchUserEventsResponse>,
    /// The sequence of the last event received (the request's `after_sequence` before any).
    pub last: i64,
}

impl Feed {
    /// Opens a follower; the error of the call itself, if any.
    pub async fn open(channel: &Channel, request: WatchUserEventsRequest) -> Result<Feed, Status> {
        let last = request.after_sequence;
        let stream = events_client(channel)
            .watch_user_events(request)
            .await?
            .into_inner();
        Ok(Feed { stream, last })
    }

    /// Opens a follower of every event after `after`; must succeed.
    pub async fn after(channel: &Channel, after: i64) -> Feed {
        Self::open(channel, watch_request(after, &[], &[]))
            .await
            .unwrap_or_else(|status| panic!("WatchUserEvents after {after}: {status:?}"))
    }

    /// The next event, `Ok(None)` if none arrives within `within`, `Err` if the stream ends
    /// with an error. A stream that ends cleanly is a failure (the feed follows forever).
    pub async fn try_next(&mut self, within: Duration) -> Result<Option<UserChangeEvent>, Status> {
        match tokio::time::timeout(within, self.stream.message()).await {
            Err(_) => Ok(None),
            Ok(Err(status)) => Err(status),
            Ok(Ok(None)) => panic!("the change feed ended without an error after {}", self.last),
            Ok(Ok(Some(response))) => {
                let event = response
                    .event
                    .expect("WatchUserEventsResponse without an event");
                self.last = event.sequence;
                Ok(Some(event))
            }
        }
    }

    /// The next event, which must arrive within `within`.
    pub async fn next(&mut self, within: Duration) -> UserChangeEvent {
        match self.try_next(within).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("no event after sequence {} within {within:?}", self.last),
            Err(status) => panic!("the change feed failed after {}: {status:?}", self.last),
        }
    }

    /// `n` events, all within `within`.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<UserChangeEvent> {
        let deadline = Instant::now() + within;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Ok(Some(event)) => out.push(event),
                Ok(None) => panic!(
                    "{} of {n} events within {within:?}; last {:?}",
                    out.len(),
                    out.last().map(brief_event)
                ),
                Err(status) => panic!(
                    "the change feed failed after {} of {n} events: {status:?}",
                    out.len()
                ),
            }
        }
        out
    }

    /// Events up to and including the first one `stop` accepts, all within `within`.
    pub async fn until(
        &mut self,
        within: Duration,
        stop: impl Fn(&UserChangeEvent) -> bool,
    ) -> Vec<UserChangeEvent> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Ok(Some(event)) => {
                    let done = stop(&event);
                    out.push(event);
                    if done {
                        return out;
                    }
                }
                Ok(None) => panic!(
                    "the awaited event did not come within {within:?}; {} events received, last \
                     {:?}",
                    out.len(),
                    out.last().map(brief_event)
                ),
                Err(status) => panic!(
                    "the change feed failed after {} events (last {:?}): {status:?}",
                    out.len(),
                    out.last().map(brief_event)
                ),
            }
        }
    }

    /// Asserts that nothing arrives for `quiet` (the follower is holding back).
    pub async fn expect_quiet(&mut self, quiet: Duration, why: &str) {
        match self.try_next(quiet).await {
            Ok(None) => {}
            Ok(Some(event)) => panic!("{why}: got {:?}", brief_event(&event)),
            Err(status) => panic!("{why}: the feed failed with {status:?}"),
        }
    }
}

/// The error a `WatchUserEvents` call ends with: from the call itself or from its first message
/// (within `within`). Panics if it delivers an event or stays silent.
pub async fn watch_error(
    channel: &Channel,
    request: WatchUserEventsRequest,
    within: Duration,
) -> Status {
    let mut feed = match Feed::open(channel, request.clone()).await {
        Err(status) => return status,
        Ok(feed) => feed,
    };
    match feed.try_next(within).await {
        Err(status) => status,
        Ok(Some(event)) => panic!(
            "WatchUserEvents {request:?} should fail, delivered {:?}",
            brief_event(&event)
        ),
        Ok(None) => panic!("WatchUserEvents {request:?} should fail, stayed open {within:?}"),
    }
}

/// `(sequence, kind, user_id, name)`, for messages.
pub fn brief_event(e: &UserChangeEvent) -> (i64, String, String, Option<String>) {
    (
        e.sequence,
        e.kind.clone(),
        e.user_id.clone(),
        e.user.as_ref().and_then(|u| u.name.clone()),
    )
}

/// The name in the event's user snapshot (panics when the snapshot is absent).
#[track_caller]
pub fn snapshot_name(e: &UserChangeEvent) -> String {
    e.user
        .as_ref()
        .unwrap_or_else(|| panic!("event without a user: {:?}", brief_event(e)))
        .name
        .clone()
        .unwrap_or_default()
}

#[track_caller]
pub fn assert_strictly_increasing(events: &[UserChangeEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].sequence < pair[1].sequence,
            "sequences must strictly increase: {:?} then {:?}",
            brief_event(&pair[0]),
            brief_event(&pair[1])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Raw database access

/// A connection of our own to the test database (not through roster).
pub async fn raw_db(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(2)
        .min_connections(1)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("raw connection to {url}: {e}"))
}

fn placeholders(sql: &str) -> String {
    if on_postgres() {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_owned()
    }
}

/// Appends an event row the way a roster writer would (`snapshot` and `role` NULL) on `conn`
/// (a connection or an open transaction); returns the sequence it took.
/// Appends an event the way every roster writer does: on PostgreSQL, under the shared feed-writers
/// advisory lock held until the transaction ends.
pub async fn insert_raw_event(conn: &impl ConnectionTrait, kind: &str, user_id: &str) -> i64 {
    if conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock_shared($1)",
            [roster::store::FEED_WRITERS_LOCK.into()],
        ))
        .await
        .expect("take the feed writers' lock");
    }
    let at = crate::task_support::now_micros();
    let sql = placeholders(
        "INSERT INTO user_events (kind, user_id, actor, at, snapshot, role) \
         VALUES (?, ?, 'raw-test', ?, NULL, NULL) RETURNING sequence",
    );
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [kind.into(), user_id.into(), at.into()],
        ))
        .await
        .expect("insert a raw user_events row")
        .expect("RETURNING sequence gives a row");
    row.try_get::<i64>("", "sequence").expect("sequence column")
}

/// What the purge loop does, done directly: removes the events up to `through` and records the
/// horizon.
pub async fn purge_events_through(conn: &DatabaseConnection, through: i64) {
    let backend = conn.get_database_backend();
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        placeholders("DELETE FROM user_events WHERE sequence <= ?"),
        [through.into()],
    ))
    .await
    .expect("delete purged events");
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        placeholders("UPDATE event_horizon SET purged_through = ? WHERE id = 1"),
        [through.into()],
    ))
    .await
    .expect("record the purge horizon");
}
