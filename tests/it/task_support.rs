//! Support for the lifecycle and task tests: an in-process server whose `Config` the test picks
//! (for the `task_item_delay_ms` hook), the real `roster` binary as a child process (to crash it
//! with SIGKILL), and helpers over a `Channel` that work with either, or with `TestServer`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use prost_types::Timestamp;
use roster::pb::task_service_client::TaskServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use roster::pb::{
    DeleteUsersRequest, GetTaskRequest, GetUserRequest, ListTasksRequest, QueryUsersRequest, Task,
    TaskStatus, UpdateUsersRequest, User, UserRequest, WatchTaskRequest,
};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{TestDb, UserRequestExt, json_from_struct, user};

/// How long a server (in process or child) may take to report SERVING.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Default bound on a task reaching a state a test waits for.
pub const TASK_DEADLINE: Duration = Duration::from_secs(30);
/// How often pollers look again.
pub const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Servers

/// An in-process roster (`roster::run`) with a `Config` the test chose. Dropping it stops it.
pub struct Roster {
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), String>>>,
    db: Arc<TestDb>,
}

impl Roster {
    /// A server on a fresh database; `tweak` adjusts the config (database and listen are set).
    pub async fn start(tweak: impl FnOnce(&mut roster::Config)) -> Self {
        Self::start_on(Arc::new(TestDb::create().await), tweak).await
    }

    /// A server pausing `delay_ms` before each task item.
    pub async fn with_item_delay(delay_ms: u64) -> Self {
        Self::start(|config| config.task_item_delay_ms = delay_ms).await
    }

    pub async fn start_on(db: Arc<TestDb>, tweak: impl FnOnce(&mut roster::Config)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let mut config = roster::Config {
            database_url: db.url().into(),
            listen: addr,
            ..roster::Config::default()
        };
        tweak(&mut config);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = shutdown_rx.await;
            };
            roster::run(config, listener, shutdown)
                .await
                .map_err(|e| format!("{e:#}"))
        });
        let channel = lazy_channel(&addr.to_string());
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if server.is_finished() {
                panic!("roster::run returned before SERVING: {:?}", server.await);
            }
            if is_serving(&channel).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "in-process roster not SERVING within {STARTUP_DEADLINE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        Roster {
            channel,
            shutdown: Some(shutdown),
            server: Some(server),
            db,
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn db(&self) -> Arc<TestDb> {
        Arc::clone(&self.db)
    }

    /// Graceful shutdown: signals it and waits (bounded) for `run` to return.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = self.server.take().expect("server handle");
        match tokio::time::timeout(Duration::from_secs(30), server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("server task failed: {join}")),
            Err(_) => Err("run did not return within 30 s of shutdown".to_owned()),
        }
    }
}

impl Drop for Roster {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The real `roster` binary, `roster serve`, as a child process. Dropping it kills it; if the
/// test is failing, the tail of its log is printed.
pub struct RosterProcess {
    label: String,
    child: Option<Child>,
    channel: Channel,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl RosterProcess {
    /// Starts `roster serve --listen 127.0.0.1:<free port> --database-url <url> <extra...>` and
    /// waits until it reports SERVING.
    pub async fn spawn(label: &str, database_url: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log_dir = tempfile::tempdir().expect("tempdir for the child's log");
        let log_path = log_dir.path().join(format!("{label}.log"));
        let log = std::fs::File::create(&log_path).expect("create the child's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .arg("serve")
            .args(["--listen", &addr, "--database-url", database_url])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env("ROSTER_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", env!("CARGO_BIN_EXE_roster")));
        let mut this = RosterProcess {
            label: label.to_owned(),
            child: Some(child),
            channel: lazy_channel(&addr),
            log_path,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = this
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "roster {label} exited before SERVING ({status}); log:\n{}",
                    this.log_tail()
                );
            }
            if is_serving(&this.channel).await {
                return this;
            }
            assert!(
                Instant::now() < deadline,
                "roster {label} not SERVING within {STARTUP_DEADLINE:?}; log:\n{}",
                this.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// SIGKILL (no shutdown, no lease release), then reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the roster child");
            child.wait().expect("reap the killed roster child");
        }
    }

    /// The last 4 KiB of the child's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let len = file.metadata().map_or(0, |m| m.len());
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for RosterProcess {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.kill();
        if was_running && std::thread::panicking() {
            eprintln!(
                "--- log of roster {} (tail) ---\n{}",
                self.label,
                self.log_tail()
            );
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn lazy_channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

async fn is_serving(channel: &Channel) -> bool {
    let mut health = HealthClient::new(channel.clone());
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

/// True when the integration suite runs against PostgreSQL.
pub fn on_postgres() -> bool {
    crate::harness::backend() == crate::harness::Backend::Postgres
}

// ---------------------------------------------------------------------------------------------
// Clients and users

pub fn users_client(channel: &Channel) -> UserServiceClient<Channel> {
    UserServiceClient::new(channel.clone())
}

pub fn tasks_client(channel: &Channel) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channel.clone())
}

/// `<prefix>-0000`, `<prefix>-0001`, ...
pub fn numbered_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// A user with every field pruning clears: name, image, custom, teams, teams_role.
pub fn full_user(id: &str) -> UserRequest {
    user(id)
        .with_name(&format!("Name of {id}"))
        .with_image(&format!("https://img.example/{id}.png"))
        .with_custom(json!({"color": "blue", "nested": {"n": 1}}))
        .with_teams(&["red", "blue"])
        .with_team_role("red", "admin")
}

/// Creates `full_user`s, 100 per UpdateUsers call.
pub async fn create_users(channel: &Channel, ids: &[String]) -> BTreeMap<String, User> {
    let mut client = users_client(channel);
    let mut created = BTreeMap::new();
    for chunk in ids.chunks(100) {
        let users = chunk.iter().map(|id| (id.clone(), full_user(id))).collect();
        let response = client
            .update_users(UpdateUsersRequest { users })
            .await
            .unwrap_or_else(|status| panic!("UpdateUsers: {status:?}"))
            .into_inner();
        created.extend(response.users);
    }
    assert_eq!(created.len(), ids.len(), "every user created");
    created
}

pub async fn fetch_user(
    channel: &Channel,
    id: &str,
    include_deleted: bool,
) -> Result<User, Status> {
    let response = users_client(channel)
        .get_user(GetUserRequest {
            id: id.to_owned(),
            include_deleted,
        })
        .await?;
    Ok(response.into_inner().user.expect("GetUser without a user"))
}

/// Every user `QueryUsers` returns (deleted never), walking every page, by id.
pub async fn all_users(
    channel: &Channel,
    include_deactivated_users: bool,
) -> BTreeMap<String, User> {
    let mut client = users_client(channel);
    let mut users = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query_users(QueryUsersRequest {
                limit: 100,
                page_token: page_token.clone(),
                include_deactivated_users,
                ..QueryUsersRequest::default()
            })
            .await
            .unwrap_or_else(|status| panic!("QueryUsers: {status:?}"))
            .into_inner();
        users.extend(page.users.into_iter().map(|u| (u.id.clone(), u)));
        if page.next_page_token.is_empty() {
            return users;
        }
        assert!(users.len() <= 100_000, "QueryUsers page walk does not end");
        page_token = page.next_page_token;
    }
}

/// Ids `QueryUsers` returns (deleted never), walking every page, sorted.
pub async fn query_ids(channel: &Channel, include_deactivated_users: bool) -> Vec<String> {
    all_users(channel, include_deactivated_users)
        .await
        .into_keys()
        .collect()
}

/// A DeleteUsers request; `hard` comes with the `messages`/`conversations: hard` it requires.
pub fn delete_request(ids: &[String], mode: &str) -> DeleteUsersRequest {
    let hard = if mode == "hard" { "hard" } else { "" };
    DeleteUsersRequest {
        user_ids: ids.to_vec(),
        user: mode.to_owned(),
        messages: hard.to_owned(),
        conversations: hard.to_owned(),
        ..DeleteUsersRequest::default()
    }
}

/// DeleteUsers that must succeed; its task id.
pub async fn delete_users(channel: &Channel, ids: &[String], mode: &str) -> String {
    users_client(channel)
        .delete_users(delete_request(ids, mode))
        .await
        .unwrap_or_else(|status| panic!("DeleteUsers ({mode}): {status:?}"))
        .into_inner()
        .task_id
}

// ---------------------------------------------------------------------------------------------
// Tasks

pub async fn fetch_task(channel: &Channel, task_id: &str) -> Task {
    try_fetch_task(channel, task_id)
        .await
        .unwrap_or_else(|status| panic!("GetTask {task_id}: {status:?}"))
}

pub async fn try_fetch_task(channel: &Channel, task_id: &str) -> Result<Task, Status> {
    let response = tasks_client(channel)
        .get_task(GetTaskRequest {
            task_id: task_id.to_owned(),
        })
        .await?;
    Ok(response.into_inner().task.expect("GetTask without a task"))
}

pub fn status_of(task: &Task) -> TaskStatus {
    TaskStatus::try_from(task.status).unwrap_or(TaskStatus::Unspecified)
}

pub fn is_terminal(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Canceled
    )
}

/// `(done, total)`; a task without progress is a server bug.
pub fn progress_of(task: &Task) -> (u32, u32) {
    let progress = task
        .progress
        .as_ref()
        .unwrap_or_else(|| panic!("task without progress: {task:?}"));
    (progress.done, progress.total)
}

/// The per-user result as JSON (`{}` when absent).
pub fn result_of(task: &Task) -> serde_json::Map<String, Json> {
    match task.result.as_ref().map(json_from_struct) {
        Some(Json::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Short description for assertion messages (without the result).
pub fn brief(task: &Task) -> String {
    let (done, total) = task.progress.as_ref().map_or((0, 0), |p| (p.done, p.total));
    format!(
        "task {} {} {:?} {done}/{total} error={:?}",
        task.task_id,
        task.kind,
        status_of(task),
        task.error
    )
}

/// Polls GetTask until `ready` holds; panics with the last state after `within`.
pub async fn wait_task(
    channel: &Channel,
    task_id: &str,
    within: Duration,
    what: &str,
    ready: impl Fn(&Task) -> bool,
) -> Task {
    let deadline = Instant::now() + within;
    loop {
        let task = fetch_task(channel, task_id).await;
        if ready(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {what}; last: {}",
            brief(&task)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the task is terminal.
pub async fn wait_finished(channel: &Channel, task_id: &str) -> Task {
    wait_task(channel, task_id, TASK_DEADLINE, "a terminal status", |t| {
        is_terminal(status_of(t))
    })
    .await
}

/// Waits until the task is terminal, and asserts it `completed` with an ok result per id.
pub async fn wait_completed_ok(channel: &Channel, task_id: &str, ids: &[String]) -> Task {
    let task = wait_finished(channel, task_id).await;
    assert_completed_ok(&task, ids);
    task
}

/// `completed`, progress `n/n`, and exactly one `{"status": "ok"}` entry per id, nothing else.
#[track_caller]
pub fn assert_completed_ok(task: &Task, ids: &[String]) {
    assert_eq!(
        status_of(task),
        TaskStatus::Completed,
        "{} should be completed",
        brief(task)
    );
    let n = u32::try_from(ids.len()).expect("few ids");
    assert_eq!(progress_of(task), (n, n), "progress of {}", brief(task));
    assert_eq!(task.error, None, "error of a completed task");
    assert!(task.finished_at.is_some(), "finished_at of {}", brief(task));
    assert_results_ok(task, ids);
}

/// The result holds exactly `ids`, each `{"status": "ok"}`.
#[track_caller]
pub fn assert_results_ok(task: &Task, ids: &[String]) {
    let result = result_of(task);
    let keys: BTreeSet<&str> = result.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        keys.len(),
        result.len(),
        "result keys of {} are unique",
        brief(task)
    );
    if keys != expected {
        let missing: Vec<&&str> = expected.difference(&keys).take(10).collect();
        let extra: Vec<&&str> = keys.difference(&expected).take(10).collect();
        panic!(
            "result of {} names {} users, expected {}; missing (first 10) {missing:?}, \
             unexpected {extra:?}",
            brief(task),
            keys.len(),
            expected.len()
        );
    }
    for (id, outcome) in &result {
        assert_eq!(
            outcome,
            &json!({"status": "ok"}),
            "outcome of {id} in {}",
            brief(task)
        );
    }
}

/// Every task ListTasks returns for the filter, walking pages of `limit`.
pub async fn list_all_tasks(
    channel: &Channel,
    status: TaskStatus,
    kind: &str,
    limit: u32,
) -> Vec<Task> {
    let mut client = tasks_client(channel);
    let mut tasks = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tasks(ListTasksRequest {
                status: status as i32,
                kind: kind.to_owned(),
                limit,
                page_token: page_token.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("ListTasks {status:?} {kind:?}: {s:?}"))
            .into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return tasks;
        }
        assert!(tasks.len() <= 10_000, "ListTasks page walk does not end");
        page_token = page.next_page_token;
    }
}

/// Collects a WatchTask stream until it ends; panics if it does not end within `within` or
/// ends with an error.
pub async fn watch_to_end(channel: &Channel, task_id: &str, within: Duration) -> Vec<Task> {
    let mut stream = tasks_client(channel)
        .watch_task(WatchTaskRequest {
            task_id: task_id.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("WatchTask {task_id}: {status:?}"))
        .into_inner();
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "WatchTask {task_id} did not end within {within:?}; last: {:?}",
                    seen.last().map(brief)
                )
            });
        match next {
            Ok(Some(response)) => seen.push(response.task.expect("WatchTaskResponse without task")),
            Ok(None) => return seen,
            Err(status) => panic!(
                "WatchTask {task_id} ended with {status:?} after {:?}",
                seen.last().map(brief)
            ),
        }
    }
}

/// Microseconds since the epoch of a timestamp (absent is a failure).
#[track_caller]
pub fn ts_micros(ts: &Option<Timestamp>, what: &str) -> i64 {
    let t = ts
        .as_ref()
        .unwrap_or_else(|| panic!("{what} should be set"));
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

/// Now, in microseconds since the epoch (the test machine's clock, which the server shares).
pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_micros()).expect("microseconds fit")
}
