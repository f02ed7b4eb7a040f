//! In-process servers: `roster::run` (or `roster::server::serve`) inside the test's runtime, on a
//! fresh database or one a test shares between servers. Every in-process server comes from the
//! one builder, `Launch`, and stops within the one deadline, `STOP_DEADLINE`:
//!
//! ```ignore
//! let srv = Launch::new().start().await;                          // fresh database, SERVING
//! let srv = Launch::new().worker(false).item_delay_ms(20).start().await;
//! let b = Launch::new().on(a.db()).start().await;                 // a second replica
//! let srv = Launch::new().api_secrets(&["s"]).config(|c| c.insecure = true).start().await;
//! let mut srv = Launch::new().listener(bound).spawn().await;      // the test's own listener,
//! srv.wait_serving(&tls_channel).await;                           //   checked over its channel
//! let srv = Launch::new().serve(listeners, tracker).start().await; // `serve` with extra ports
//! srv.stop().await?;                                              // what `run` returned
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster::domain::time::Clock;
use roster::pb::device_service_client::DeviceServiceClient;
use roster::pb::event_service_client::EventServiceClient;
use roster::pb::moderation_service_client::ModerationServiceClient;
use roster::pb::role_service_client::RoleServiceClient;
use roster::pb::task_service_client::TaskServiceClient;
use roster::pb::token_service_client::TokenServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use roster::pb::{
    QueryUsersRequest, QueryUsersResponse, Task, TaskStatus, UpdateUserPartialRequest,
    UpdateUsersPartialRequest, UpdateUsersRequest, User, UserChangeEvent, UserRequest,
    WatchTaskRequest, WatchUserEventsRequest,
};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use super::db::TestDb;
use super::proto::{POLL, filter_query, health_status, ids, patient_channel};

/// How long a server (in process or child) may take to migrate and report SERVING (PostgreSQL
/// on a busy CI box).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long `run` may take to return once shutdown is requested.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// How long a task or an awaited change-feed event may take.
const WAIT_DEADLINE: Duration = Duration::from_secs(30);

/// Where the server listens.
enum Ports {
    /// `run` on `127.0.0.1:0`, bound by the launcher.
    Loopback,
    /// `run` on a listener the test bound (e.g. on every interface).
    Listener(TcpListener),
    /// `serve` on listeners the test bound (health-only and metrics ports included), its
    /// background work on a tracker the test keeps, to see what is still running.
    Serve(roster::server::Listeners, TaskTracker),
}

type Configure<'a> = Box<dyn FnOnce(&mut roster::Config) + 'a>;

/// Builds an in-process roster. The configuration is `roster::Config::default()` with the
/// database URL and listen address set first, then every adjustment in the order given.
#[must_use = "a Launch does nothing until `start` or `spawn`"]
pub struct Launch<'a> {
    db: Option<Arc<TestDb>>,
    ports: Ports,
    /// Serve the HTTP door too, on a loopback port of its own.
    http: bool,
    configure: Vec<Configure<'a>>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Launch<'a> {
    /// A server on a fresh database, on `127.0.0.1:0`, with the default configuration.
    pub fn new() -> Self {
        Launch {
            db: None,
            ports: Ports::Loopback,
            http: false,
            configure: Vec::new(),
        }
    }

    /// On an existing database (a replica beside another server, or a restart on the data of a
    /// stopped one).
    pub fn on(mut self, db: Arc<TestDb>) -> Self {
        self.db = Some(db);
        self
    }

    /// Any adjustment of the configuration (runs after the database and listen address are set).
    pub fn config(mut self, configure: impl FnOnce(&mut roster::Config) + 'a) -> Self {
        self.configure.push(Box::new(configure));
        self
    }

    /// With or without the task worker.
    pub fn worker(self, on: bool) -> Self {
        self.config(move |config| config.worker = on)
    }

    /// Pausing `ms` before each task item (so that a test can catch a task mid-way).
    pub fn item_delay_ms(self, ms: u64) -> Self {
        self.config(move |config| config.task_item_delay_ms = ms)
    }

    /// Requiring a bearer token signed with one of `secrets`.
    pub fn api_secrets(self, secrets: &[&str]) -> Self {
        let secrets: Vec<_> = secrets.iter().map(|s| (*s).into()).collect();
        self.config(move |config| config.api_secrets = secrets)
    }

    /// Serving the Stream-compatible HTTP door as well, on its own `127.0.0.1:0` port
    /// (`Server::http`). The server then starts through `serve`.
    pub fn http(mut self) -> Self {
        self.http = true;
        self
    }

    /// `run` on a listener the test bound.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.ports = Ports::Listener(listener);
        self
    }

    /// `roster::server::serve` on `listeners` the test bound, its background work on `tasks`.
    pub fn serve(mut self, listeners: roster::server::Listeners, tasks: TaskTracker) -> Self {
        self.ports = Ports::Serve(listeners, tasks);
        self
    }

    /// Starts the server and waits until it reports SERVING on its main port (plaintext).
    pub async fn start(self) -> Server {
        let mut server = self.spawn().await;
        let channel = server.channel();
        server.wait_serving(&channel).await;
        server
    }

    /// Starts the server without waiting for it: for a main port only the test can talk to
    /// (TLS: see `Server::wait_serving`), or a `run` that must refuse to start (`Server::returned`).
    pub async fn spawn(self) -> Server {
        let db = match self.db {
            Some(db) => db,
            None => Arc::new(TestDb::create().await),
        };
        let ports = match self.ports {
            Ports::Loopback => Ports::Listener(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0"),
            ),
            ports => ports,
        };
        let mut http_addr = None;
        let ports = if self.http {
            let http = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            http_addr = Some(http.local_addr().expect("HTTP address"));
            match ports {
                Ports::Listener(main) => Ports::Serve(
                    roster::server::Listeners {
                        main,
                        health: None,
                        metrics: None,
                        http: Some(http),
                    },
                    TaskTracker::new(),
                ),
                Ports::Serve(mut listeners, tasks) => {
                    listeners.http = Some(http);
                    Ports::Serve(listeners, tasks)
                }
                Ports::Loopback => unreachable!("bound above"),
            }
        } else {
            ports
        };
        let addr = match &ports {
            Ports::Listener(listener) => listener.local_addr(),
            Ports::Serve(listeners, _) => listeners.main.local_addr(),
            Ports::Loopback => unreachable!("bound above"),
        }
        .expect("listener address");
        let mut config = roster::Config {
            database_url: db.url().into(),
            database_statement_cache: crate::support::db::statement_cache_for(db.url()),
            listen: addr,
            ..roster::Config::default()
        };
        for configure in self.configure {
            configure(&mut config);
        }
        let clock = config.clock.clone();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let shutdown_signal = async move {
            // Sent, or the sender dropped: either way the test is done with this server.
            let _ = shutdown_rx.await;
        };
        let task = tokio::spawn(async move {
            let outcome = match ports {
                Ports::Listener(listener) => roster::run(config, listener, shutdown_signal).await,
                Ports::Serve(listeners, tasks) => {
                    roster::server::serve(config, listeners, tasks, shutdown_signal).await
                }
                Ports::Loopback => unreachable!("bound above"),
            };
            outcome.map_err(|e| format!("{e:#}"))
        });
        Server {
            addr,
            http_addr,
            channel: patient_channel(addr),
            shutdown: Some(shutdown),
            task: Some(task),
            db,
            clock,
        }
    }
}

/// A running in-process roster with clients connected to it. Dropping it stops the server;
/// dropping the last handle to its database removes the database.
pub struct Server {
    addr: SocketAddr,
    /// The HTTP door's address, when launched with `Launch::http`.
    http_addr: Option<SocketAddr>,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    db: Arc<TestDb>,
    clock: Clock,
}

impl Server {
    /// Polls grpc health (service "") over `channel` until SERVING; fails fast if `run` returns
    /// first.
    pub async fn wait_serving(&mut self, channel: &Channel) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let task = self.task.take().expect("server handle");
                panic!("roster::run returned before SERVING: {:?}", task.await);
            }
            let last = match health_status(channel).await {
                Ok(ServingStatus::Serving) => return,
                other => other,
            };
            assert!(
                Instant::now() < deadline,
                "roster did not report SERVING within {STARTUP_DEADLINE:?}; last: {last:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// What `run` returned by itself (no shutdown requested), if it did within `within`.
    pub async fn returned(mut self, within: Duration) -> Option<Result<(), String>> {
        let task = self.task.take().expect("server handle");
        match tokio::time::timeout(within, task).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(join)) => Some(Err(format!("server task failed: {join}"))),
            Err(_) => None,
        }
    }

    /// Signals shutdown without waiting for `run` to return (see `stop`).
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Requests shutdown and waits (up to `STOP_DEADLINE`) for `run` to return; gives back what
    /// it returned.
    pub async fn stop(mut self) -> Result<(), String> {
        self.begin_shutdown();
        let task = self.task.take().expect("server handle");
        match tokio::time::timeout(STOP_DEADLINE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("server task failed: {join}")),
            Err(_) => Err(format!(
                "run did not return within {STOP_DEADLINE:?} of shutdown"
            )),
        }
    }

    pub fn db(&self) -> Arc<TestDb> {
        Arc::clone(&self.db)
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Where the server listens (for clients that bring their own connection).
    pub fn address(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// A client of the HTTP door (the server must be launched with `Launch::http`), sending
    /// `api_key` and no token; see `HttpClient::key` and `HttpClient::token`.
    pub fn http(&self) -> super::door_client::HttpClient {
        super::door_client::HttpClient::new(self.http_addr.expect("launched with Launch::http()"))
    }

    /// A `UserService` client (cheap: clients share the channel).
    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    /// A `RoleService` client.
    pub fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }

    pub fn moderation(&self) -> ModerationServiceClient<Channel> {
        ModerationServiceClient::new(self.channel.clone())
    }

    pub fn devices(&self) -> DeviceServiceClient<Channel> {
        DeviceServiceClient::new(self.channel.clone())
    }

    pub fn tokens(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(self.channel.clone())
    }

    /// The server's clock: advancing it moves the server's time (bans and tokens expire,
    /// presence fades) without sleeping.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Follows a task until it reaches a terminal state; gives the final task.
    pub async fn wait_for_task(&self, task_id: &str) -> Task {
        let watch = async {
            let mut stream = TaskServiceClient::new(self.channel.clone())
                .watch_task(WatchTaskRequest {
                    task_id: task_id.to_owned(),
                })
                .await
                .expect("WatchTask")
                .into_inner();
            let mut last = None;
            while let Some(message) = stream.message().await.expect("WatchTask stream") {
                last = message.task;
            }
            last.expect("WatchTask sent the task")
        };
        let task = tokio::time::timeout(WAIT_DEADLINE, watch)
            .await
            .unwrap_or_else(|_| panic!("task {task_id} did not finish within {WAIT_DEADLINE:?}"));
        assert_eq!(
            task.status(),
            TaskStatus::Completed,
            "task {task_id} ended {task:?}"
        );
        task
    }

    /// The first `count` change-feed events of the given kinds (all kinds when empty), from the
    /// start of the feed.
    pub async fn events(&self, kinds: &[&str], count: usize) -> Vec<UserChangeEvent> {
        let read = async {
            let mut stream = EventServiceClient::new(self.channel.clone())
                .watch_user_events(WatchUserEventsRequest {
                    after_sequence: 0,
                    kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
                    user_ids: Vec::new(),
                })
                .await
                .expect("WatchUserEvents")
                .into_inner();
            let mut events = Vec::with_capacity(count);
            while events.len() < count {
                let message = stream
                    .message()
                    .await
                    .expect("WatchUserEvents stream")
                    .expect("the feed stream does not end");
                events.extend(message.event);
            }
            events
        };
        tokio::time::timeout(WAIT_DEADLINE, read)
            .await
            .unwrap_or_else(|_| panic!("{count} events of {kinds:?} within {WAIT_DEADLINE:?}"))
    }

    /// `UpdateUsers` with the users keyed by their ids.
    pub async fn upsert(
        &self,
        users: impl IntoIterator<Item = UserRequest>,
    ) -> Result<HashMap<String, User>, Status> {
        let users = users
            .into_iter()
            .map(|user| (user.id.clone(), user))
            .collect();
        let response = self
            .users()
            .update_users(UpdateUsersRequest { users })
            .await?;
        Ok(response.into_inner().users)
    }

    /// `upsert` that must succeed.
    #[track_caller]
    pub fn upsert_ok(
        &self,
        users: impl IntoIterator<Item = UserRequest>,
    ) -> impl Future<Output = HashMap<String, User>> + '_ {
        let caller = std::panic::Location::caller();
        let users: Vec<UserRequest> = users.into_iter().collect();
        async move {
            self.upsert(users)
                .await
                .unwrap_or_else(|status| panic!("UpdateUsers at {caller}: {status:?}"))
        }
    }

    /// `UpdateUsersPartial`.
    pub async fn update_partial(
        &self,
        users: impl IntoIterator<Item = UpdateUserPartialRequest>,
    ) -> Result<HashMap<String, User>, Status> {
        let users = users.into_iter().collect();
        let response = self
            .users()
            .update_users_partial(UpdateUsersPartialRequest { users })
            .await?;
        Ok(response.into_inner().users)
    }

    /// A one-user `UpdateUsersPartial` that must succeed; returns the updated user.
    #[track_caller]
    pub fn update_partial_ok(
        &self,
        update: UpdateUserPartialRequest,
    ) -> impl Future<Output = User> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let id = update.id.clone();
            let mut users = self
                .update_partial([update])
                .await
                .unwrap_or_else(|status| panic!("UpdateUsersPartial at {caller}: {status:?}"));
            users
                .remove(&id)
                .unwrap_or_else(|| panic!("{id} missing from the response at {caller}"))
        }
    }

    /// `GetUser` without deleted users.
    pub async fn get(&self, id: &str) -> Result<User, Status> {
        let request = roster::pb::GetUserRequest {
            id: id.to_owned(),
            include_deleted: false,
        };
        let response = self.users().get_user(request).await?;
        Ok(response
            .into_inner()
            .user
            .expect("GetUserResponse without a user"))
    }

    /// `get` that must succeed.
    #[track_caller]
    pub fn get_ok<'a>(&'a self, id: &'a str) -> impl Future<Output = User> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            self.get(id)
                .await
                .unwrap_or_else(|status| panic!("GetUser {id} at {caller}: {status:?}"))
        }
    }

    pub async fn query(&self, request: QueryUsersRequest) -> Result<QueryUsersResponse, Status> {
        Ok(self.users().query_users(request).await?.into_inner())
    }

    /// The ids one page (limit 100) of `filter` returns, in order.
    pub async fn find(&self, filter: Json) -> Result<Vec<String>, Status> {
        let response = self.query(filter_query(filter)).await?;
        Ok(ids(&response.users))
    }

    /// Every user `QueryUsers` returns (deactivated included), walking pages; sorted by id.
    pub async fn all_users(&self) -> Vec<User> {
        let mut users = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = QueryUsersRequest {
                limit: 100,
                page_token: page_token.clone(),
                include_deactivated_users: true,
                ..QueryUsersRequest::default()
            };
            let page = self
                .query(request)
                .await
                .expect("QueryUsers listing every user");
            users.extend(page.users);
            if page.next_page_token.is_empty() {
                break;
            }
            assert!(users.len() <= 100_000, "page walk does not end");
            page_token = page.next_page_token;
        }
        users.sort_by(|a, b| a.id.cmp(&b.id));
        users
    }

    /// Ids of every user, sorted.
    pub async fn all_ids(&self) -> Vec<String> {
        ids(&self.all_users().await)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
