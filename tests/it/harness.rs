//! A fresh database and a real server per test, typed clients, and the helpers tests share to
//! build requests and check outcomes.
//!
//! Backend: `ROSTER_TEST_DB` = `sqlite` (default) or `postgres`. For PostgreSQL the admin URL comes
//! from `ROSTER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); each test
//! creates its own `roster_test_*` database and drops it when the test ends, pass or fail.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp};
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
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbErr};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

/// How long a server may take to migrate and report SERVING (PostgreSQL on a busy CI box).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long `run` may take to return once shutdown is requested.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
/// How long a task or an awaited change-feed event may take.
const WAIT_DEADLINE: Duration = Duration::from_secs(30);
const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("ROSTER_TEST_DB").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        Ok(other) => panic!("ROSTER_TEST_DB must be `sqlite` or `postgres`, not {other:?}"),
    }
}

/// A database no other test uses. Dropping the last handle removes it.
pub struct TestDb {
    url: String,
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = self {
            drop_pg_database(admin_url.clone(), name.clone());
        }
    }
}

impl TestDb {
    pub async fn create() -> Self {
        match backend() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a tempdir for the SQLite file");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("roster.db").display()
                );
                TestDb {
                    url,
                    _cleanup: Cleanup::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = std::env::var("ROSTER_TEST_PG_URL")
                    .ok()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| DEFAULT_PG_ADMIN_URL.to_owned());
                let name = unique_database_name();
                admin_execute(&admin_url, &format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap_or_else(|e| panic!("CREATE DATABASE {name} via {admin_url}: {e}"));
                let url = with_database(&admin_url, &name);
                TestDb {
                    url,
                    _cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// What still holds this database open, as an operator would look: on PostgreSQL the
    /// sessions `pg_stat_activity` lists for it; on SQLite its write-ahead log, which SQLite folds
    /// back and removes when the last connection closes. `None` when nothing does.
    pub async fn held_open(&self) -> Option<String> {
        match &self._cleanup {
            Cleanup::Sqlite(_) => {
                let path = self
                    .url
                    .strip_prefix("sqlite://")
                    .and_then(|rest| rest.split('?').next())
                    .expect("a sqlite:// URL");
                let wal = format!("{path}-wal");
                std::path::Path::new(&wal)
                    .exists()
                    .then(|| format!("{wal} exists"))
            }
            Cleanup::Postgres { admin_url, name } => {
                let mut options = ConnectOptions::new(admin_url.clone());
                options.max_connections(1).sqlx_logging(false);
                let conn = Database::connect(options)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
                let row = conn
                    .query_one_raw(sea_orm::Statement::from_sql_and_values(
                        sea_orm::DatabaseBackend::Postgres,
                        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1",
                        [name.clone().into()],
                    ))
                    .await
                    .expect("read pg_stat_activity")
                    .expect("count(*) gives a row");
                let _ = conn.close().await;
                let n: i64 = row.try_get("", "n").expect("count column");
                (n > 0).then(|| format!("{n} sessions on {name}"))
            }
        }
    }
}

/// `roster_test_<pid>_<counter>_<time>`: unique within this run and across runs.
fn unique_database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("roster_test_{}_{n}_{nanos}", std::process::id())
}

/// The admin URL with its database path replaced by `name` (query string kept).
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

async fn admin_execute(admin_url: &str, sql: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(admin_url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    let conn = Database::connect(options).await?;
    let result = conn.execute_unprepared(sql).await.map(|_| ());
    // Best effort: the connection goes away with the pool either way.
    let _ = conn.close().await;
    result
}

/// Runs on its own thread with its own runtime: Drop cannot await, and the test's runtime may be
/// single-threaded or already shutting down. `WITH (FORCE)` ends the server's open connections.
fn drop_pg_database(admin_url: String, name: String) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(admin_execute(&admin_url, &sql))
            .map_err(|e| e.to_string())
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: could not drop test database {name}: {e}"),
        Err(_) => eprintln!("warning: dropping test database {name} panicked"),
    }
}

/// A running roster with clients connected to it. Dropping it stops the server; dropping the last
/// handle to its database removes the database.
pub struct TestServer {
    addr: std::net::SocketAddr,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), String>>>,
    db: Arc<TestDb>,
    clock: Clock,
}

impl TestServer {
    /// A server on a fresh database, SERVING.
    pub async fn start() -> Self {
        Self::start_on(Arc::new(TestDb::create().await)).await
    }

    /// A server on an existing database (e.g. to restart on the data of a stopped server).
    pub async fn start_on(db: Arc<TestDb>) -> Self {
        Self::start_on_with(db, |_| {}).await
    }

    /// A server on a fresh database, with its configuration adjusted by `configure` (the
    /// database URL and listen address are the harness's).
    pub async fn start_with(configure: impl FnOnce(&mut roster::Config)) -> Self {
        Self::start_on_with(Arc::new(TestDb::create().await), configure).await
    }

    pub async fn start_on_with(
        db: Arc<TestDb>,
        configure: impl FnOnce(&mut roster::Config),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let mut config = roster::Config::default();
        configure(&mut config);
        config.database_url = db.url().into();
        config.listen = addr;
        let clock = config.clock.clone();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                // Sent, or the sender dropped: either way the test is done with this server.
                let _ = shutdown_rx.await;
            };
            roster::run(config, listener, shutdown)
                .await
                .map_err(|e| format!("{e:#}"))
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint URL")
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let mut this = TestServer {
            addr,
            channel,
            shutdown: Some(shutdown),
            server: Some(server),
            db,
            clock,
        };
        this.wait_until_serving().await;
        this
    }

    /// Polls grpc health (service "") until SERVING; fails fast if `run` returns first.
    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut health = HealthClient::new(self.channel.clone());
        loop {
            if self
                .server
                .as_ref()
                .is_some_and(|server| server.is_finished())
            {
                let server = self.server.take().expect("server handle");
                panic!("roster::run returned before SERVING: {:?}", server.await);
            }
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            let last = match tokio::time::timeout(Duration::from_secs(2), check).await {
                Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => {
                    return;
                }
                Ok(Ok(response)) => format!("status {:?}", response.get_ref().status()),
                Ok(Err(status)) => format!("{status:?}"),
                Err(_) => "health check timed out".to_owned(),
            };
            assert!(
                Instant::now() < deadline,
                "roster did not report SERVING within {STARTUP_DEADLINE:?}; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Requests shutdown and waits for `run` to return; gives back what it returned.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = self.server.take().expect("server handle");
        match tokio::time::timeout(SHUTDOWN_DEADLINE, server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("server task failed: {join}")),
            Err(_) => Err(format!(
                "run did not return within {SHUTDOWN_DEADLINE:?} of shutdown"
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

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building requests

/// A `UserRequest` with only its id: a replace with it resets every caller field.
pub fn user(id: &str) -> UserRequest {
    UserRequest {
        id: id.to_owned(),
        ..UserRequest::default()
    }
}

/// Fluent setters for the fields tests set most.
pub trait UserRequestExt: Sized {
    fn with_name(self, name: &str) -> Self;
    fn with_image(self, image: &str) -> Self;
    fn with_role(self, role: &str) -> Self;
    fn with_custom(self, custom: Json) -> Self;
    fn with_language(self, language: &str) -> Self;
    fn with_teams(self, teams: &[&str]) -> Self;
    fn with_team_role(self, team: &str, role: &str) -> Self;
}

impl UserRequestExt for UserRequest {
    fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
    fn with_image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }
    fn with_role(mut self, role: &str) -> Self {
        self.role = Some(role.to_owned());
        self
    }
    fn with_custom(mut self, custom: Json) -> Self {
        self.custom = Some(struct_from(custom));
        self
    }
    fn with_language(mut self, language: &str) -> Self {
        self.language = language.to_owned();
        self
    }
    fn with_teams(mut self, teams: &[&str]) -> Self {
        self.teams = teams.iter().map(|team| (*team).to_owned()).collect();
        self
    }
    fn with_team_role(mut self, team: &str, role: &str) -> Self {
        self.teams_role.insert(team.to_owned(), role.to_owned());
        self
    }
}

/// One partial update: `set` is a JSON object, `unset` a list of keys.
pub fn partial(id: &str, set: Json, unset: &[&str]) -> UpdateUserPartialRequest {
    UpdateUserPartialRequest {
        id: id.to_owned(),
        set: Some(struct_from(set)),
        unset: unset.iter().map(|key| (*key).to_owned()).collect(),
    }
}

/// A `QueryUsersRequest` for `filter` with limit 100 and the default sort.
pub fn filter_query(filter: Json) -> QueryUsersRequest {
    QueryUsersRequest {
        filter: Some(struct_from(filter)),
        limit: 100,
        ..QueryUsersRequest::default()
    }
}

pub fn ids(users: &[User]) -> Vec<String> {
    users.iter().map(|user| user.id.clone()).collect()
}

/// Sorted, owned ids: `id_set(["b", "a"]) == ["a", "b"]`.
pub fn id_set<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<String> = ids.into_iter().map(str::to_owned).collect();
    set.into_iter().collect()
}

pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------
// JSON <-> google.protobuf.Struct

/// A JSON object as a `Struct`. Panics on anything but an object.
pub fn struct_from(json: Json) -> Struct {
    match json {
        Json::Object(map) => Struct {
            fields: map
                .into_iter()
                .map(|(key, value)| (key, value_from(value)))
                .collect(),
        },
        other => panic!("a Struct must be a JSON object, not {other}"),
    }
}

pub fn value_from(json: Json) -> prost_types::Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().expect("JSON number as f64")),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(value_from).collect(),
        }),
        object @ Json::Object(_) => Kind::StructValue(struct_from(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `Struct` as JSON. Whole numbers come back as integers, so `json!({"n": 1})` round-trips.
pub fn json_from_struct(s: &Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(key, value)| (key.clone(), json_from_value(value)))
            .collect(),
    )
}

pub fn json_from_value(value: &prost_types::Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Json::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
            }
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Json::Array(list.values.iter().map(json_from_value).collect())
        }
        Some(Kind::StructValue(s)) => json_from_struct(s),
    }
}

/// A user's custom data as JSON; `{}` when the server sent none.
pub fn custom_of(user: &User) -> Json {
    user.custom
        .as_ref()
        .map_or_else(|| Json::Object(Default::default()), json_from_struct)
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/// Microseconds since the epoch of a timestamp the server must have set.
#[track_caller]
pub fn micros(timestamp: &Option<Timestamp>) -> i64 {
    let t = timestamp.as_ref().expect("timestamp is set");
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

/// RFC 3339 text of a timestamp the server must have set, as filters take it.
#[track_caller]
pub fn rfc3339(timestamp: &Option<Timestamp>) -> String {
    timestamp.as_ref().expect("timestamp is set").to_string()
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The error of a call that must fail.
#[track_caller]
pub fn expect_err<T: Debug>(result: Result<T, Status>) -> Status {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(status) => status,
    }
}

/// INVALID_ARGUMENT with a BadRequest field violation on `field` (or inside it: `field.x`,
/// `field[x]`).
#[track_caller]
pub fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT, got {status:?}"
    );
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT without google.rpc.BadRequest: {status:?}"));
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    let names_field = |path: &str| {
        path == field
            || path
                .strip_prefix(field)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    assert!(
        fields.iter().any(|path| names_field(path)),
        "expected a field violation on {field:?}, got {fields:?} ({status:?})"
    );
}

/// INVALID_ARGUMENT naming one user of a list request (`UpdateUsersPartial`) and `field` within
/// it: the path may name the user by its index in the list (`users[1].role`, as for any repeated
/// field) or by its id (`users[u1].role`); the contract only says the error names the user.
#[track_caller]
pub fn assert_invalid_user(status: &Status, index: usize, id: &str, field: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT, got {status:?}"
    );
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT without google.rpc.BadRequest: {status:?}"));
    let by_index = format!("users[{index}]{field}");
    let by_id = format!("users[{id}]{field}");
    assert!(
        bad_request
            .field_violations
            .iter()
            .any(|v| v.field.starts_with(&by_index) || v.field.starts_with(&by_id)),
        "expected a field violation on {by_index} or {by_id}, got {:?}",
        bad_request.field_violations
    );
}

/// `code` with a google.rpc.ErrorInfo whose reason is `reason`.
#[track_caller]
pub fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} {reason}, got {status:?}"
    );
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{code:?} without google.rpc.ErrorInfo: {status:?}"));
    assert_eq!(info.reason, reason, "ErrorInfo reason of {status:?}");
}
