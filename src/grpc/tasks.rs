//! `roster.v1.TaskService`: read, list, cancel and watch durable tasks.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::convert::{json_to_struct, timestamp};
use crate::domain::task::{Task, TaskKind, TaskStatus};
use crate::error::Error;
use crate::pb::{self, task_service_server::TaskService};
use crate::store::Store;
use crate::tasks::{Hub, TaskChanged};

/// How often the watched tasks' rows are re-read: bounds how late a change made by another
/// replica arrives (the local worker's changes arrive at once through the hub).
const WATCH_POLL: Duration = Duration::from_millis(100);
const DEFAULT_LIST_LIMIT: u32 = 30;
const MAX_LIST_LIMIT: u32 = 100;

pub struct TaskApi {
    store: Store,
    hub: Hub,
    watched: Watched,
    /// Where the loops feeding WatchTask streams run, so the server waits for them (and their
    /// last reads) before it closes the pool.
    tasks: TaskTracker,
}

impl TaskApi {
    /// Also starts, on `tasks`, the loop that notices changes made by other replicas (see
    /// `Watched`); it stops when the hub shuts down, and the tracker's owner waits for it.
    pub fn new(store: Store, hub: Hub, tasks: &TaskTracker) -> Self {
        let watched = Watched::default();
        tasks.spawn(poll_watched(store.clone(), hub.clone(), watched.clone()));
        TaskApi {
            store,
            hub,
            watched,
            tasks: tasks.clone(),
        }
    }
}

/// The tasks this process's watchers follow, with the last version seen of each. Changes made
/// here reach watchers through the hub at once; for changes made by another replica one loop
/// reads the versions of all watched tasks in one query every `WATCH_POLL` and announces the
/// changed ones on the hub, so the cost stays one query per interval however many watch.
#[derive(Clone, Default)]
struct Watched {
    tasks: std::sync::Arc<std::sync::Mutex<HashMap<String, (usize, i64)>>>,
}

impl Watched {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (usize, i64)>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers one watcher of `task_id`; it is unregistered when the guard drops.
    fn add(&self, task_id: &str, version: i64) -> WatchGuard {
        let mut tasks = self.lock();
        let entry = tasks.entry(task_id.to_owned()).or_insert((0, version));
        entry.0 += 1;
        WatchGuard {
            watched: self.clone(),
            task_id: task_id.to_owned(),
        }
    }
}

struct WatchGuard {
    watched: Watched,
    task_id: String,
}

impl WatchGuard {
    /// A watcher sent the task at `version`: the poll loop, which looks for changes made by
    /// other replicas, must not announce it again (each announcement costs every watcher a read
    /// of the task and all its finished items).
    fn sent(&self, version: i64) {
        if let Some(entry) = self.watched.lock().get_mut(&self.task_id) {
            entry.1 = entry.1.max(version);
        }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut tasks = self.watched.lock();
        if let Some(entry) = tasks.get_mut(&self.task_id) {
            entry.0 -= 1;
            if entry.0 == 0 {
                tasks.remove(&self.task_id);
            }
        }
    }
}

async fn poll_watched(store: Store, hub: Hub, watched: Watched) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WATCH_POLL) => {}
            () = hub.shutting_down() => return,
        }
        let ids: Vec<String> = watched.lock().keys().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let versions = match store.task_versions(ids).await {
            Ok(versions) => versions,
            Err(err) => {
                tracing::debug!(error = %err, "reading watched tasks failed");
                continue;
            }
        };
        let mut changed = Vec::new();
        {
            let mut tasks = watched.lock();
            for (id, version) in versions {
                if let Some(entry) = tasks.get_mut(&id)
                    && entry.1 != version
                {
                    entry.1 = version;
                    changed.push(id);
                }
            }
        }
        for id in changed {
            hub.task_changed(&id);
        }
    }
}

impl From<TaskStatus> for pb::TaskStatus {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Pending => pb::TaskStatus::Pending,
            TaskStatus::Running => pb::TaskStatus::Running,
            TaskStatus::Waiting => pb::TaskStatus::Waiting,
            TaskStatus::Completed => pb::TaskStatus::Completed,
            TaskStatus::Failed => pb::TaskStatus::Failed,
            TaskStatus::Canceled => pb::TaskStatus::Canceled,
        }
    }
}

/// The status a wire status names; `None` for `UNSPECIFIED`.
fn status_of(status: pb::TaskStatus) -> Option<TaskStatus> {
    TaskStatus::ALL
        .into_iter()
        .find(|&s| pb::TaskStatus::from(s) == status)
}

impl From<Task> for pb::Task {
    fn from(t: Task) -> Self {
        pb::Task::from(&t)
    }
}

impl From<&Task> for pb::Task {
    fn from(t: &Task) -> Self {
        pb::Task {
            task_id: t.id.clone(),
            kind: t.kind.as_str().to_owned(),
            status: pb::TaskStatus::from(t.status) as i32,
            created_at: Some(timestamp(t.created_at)),
            updated_at: Some(timestamp(t.updated_at)),
            started_at: t.started_at.map(timestamp),
            finished_at: t.finished_at.map(timestamp),
            progress: Some(pb::TaskProgress {
                done: t.done,
                total: t.total,
            }),
            result: Some(json_to_struct(&t.result)),
            error: t.error.as_ref().map(|e| pb::TaskError {
                r#type: e.kind.clone(),
                description: e.description.clone(),
            }),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchTaskResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TaskService for TaskApi {
    type WatchTaskStream = WatchStream;

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let task = self.store.get_task(&request.into_inner().task_id).await?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(task.into()),
        }))
    }

    async fn watch_task(
        &self,
        request: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let task_id = request.into_inner().task_id;
        // Subscribe before the first read so that no change can fall between the two.
        let changes = self.hub.subscribe();
        let first = self.store.get_task(&task_id).await?;
        let (tx, rx) = mpsc::channel(16);
        let guard = self.watched.add(&task_id, first.version);
        self.tasks.spawn(follow(
            self.store.clone(),
            self.hub.clone(),
            first,
            changes,
            tx,
            guard,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let req = request.into_inner();
        let status = match pb::TaskStatus::try_from(req.status) {
            Ok(s) => status_of(s),
            Err(_) => {
                return Err(
                    Error::invalid("status", format!("unknown status {}", req.status)).into(),
                );
            }
        };
        let kind = match req.kind.as_str() {
            "" => None,
            k => Some(
                TaskKind::parse(k)
                    .ok_or_else(|| Error::invalid("kind", format!("unknown kind {k:?}")))?,
            ),
        };
        let limit = match req.limit {
            0 => DEFAULT_LIST_LIMIT,
            n if n <= MAX_LIST_LIMIT => n,
            n => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be 1 to {MAX_LIST_LIMIT}, got {n}"),
                )
                .into());
            }
        };
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(decode_token(token)?),
        };
        let tasks = self
            .store
            .list_tasks(status, kind, u64::from(limit) + 1, after)
            .await?;
        let more = tasks.len() > limit as usize;
        let tasks: Vec<Task> = tasks.into_iter().take(limit as usize).collect();
        let next_page_token = match tasks.last() {
            Some(last) if more => encode_token(last.created_at, &last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTasksResponse {
            tasks: tasks.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::CancelTaskResponse>, Status> {
        let task_id = request.into_inner().task_id;
        self.store.cancel_task(&task_id).await?;
        self.hub.task_changed(&task_id);
        let task = self.store.get_task(&task_id).await?;
        Ok(Response::new(pb::CancelTaskResponse {
            task: Some(task.into()),
        }))
    }
}

/// Streams `first`, then every change, until a terminal state, the client leaving, or shutdown.
/// A change this process's worker committed comes with the task as it left it and is applied to
/// the task already sent; any other change (another replica's, a cancel, a missed update) is read
/// from the database.
async fn follow(
    store: Store,
    hub: Hub,
    first: Task,
    mut changes: tokio::sync::broadcast::Receiver<Arc<TaskChanged>>,
    tx: mpsc::Sender<Result<pb::WatchTaskResponse, Status>>,
    watching: WatchGuard,
) {
    let mut seen = first;
    if send(&tx, &seen).await.is_err() || seen.status.is_terminal() {
        return;
    }
    while !seen.status.is_terminal() {
        let change = tokio::select! {
            () = tx.closed() => return,
            () = hub.shutting_down() => {
                let _ = tx.send(Err(Status::unavailable("roster is shutting down; watch again"))).await;
                return;
            }
            changed = changes.recv() => match changed {
                Ok(change) if change.task_id != seen.id => continue,
                Ok(change) => change,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                // Lagged: some announcements were missed; read the task.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Arc::new(TaskChanged { task_id: seen.id.clone(), update: None })
                }
            },
        };
        match &change.update {
            // Already seen: the first read came after this change.
            Some(update) if update.task.version <= seen.version => continue,
            Some(update) if update.apply_to(&mut seen) => {}
            // Announcements name a task that changed (the poll loop only announces new
            // versions), so the task is read whole at once rather than its version first.
            _ => match store.get_task(&seen.id).await {
                Ok(task) if task.version == seen.version => continue,
                Ok(task) => seen = task,
                // Purged meanwhile: nothing more to tell.
                Err(Error::TaskNotFound(_)) => return,
                Err(err) => {
                    let _ = tx.send(Err(err.into())).await;
                    return;
                }
            },
        }
        if send(&tx, &seen).await.is_err() {
            return;
        }
        watching.sent(seen.version);
    }
}

async fn send(
    tx: &mpsc::Sender<Result<pb::WatchTaskResponse, Status>>,
    task: &Task,
) -> Result<(), mpsc::error::SendError<Result<pb::WatchTaskResponse, Status>>> {
    tx.send(Ok(pb::WatchTaskResponse {
        task: Some(task.into()),
    }))
    .await
}

fn encode_token(created_at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_token(token: &str) -> Result<(i64, String), Error> {
    let bad = || Error::invalid("page_token", "not a token returned by ListTasks");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (created_at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((created_at.parse().map_err(|_| bad())?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::TaskUpdate;
    use serde_json::json;

    type Stream = mpsc::Receiver<Result<pb::WatchTaskResponse, Status>>;

    fn task(version: i64, done: u32, status: TaskStatus) -> Task {
        Task {
            id: "t1".into(),
            kind: TaskKind::DeleteUsers.into(),
            status,
            created_at: 1,
            updated_at: 10 + version,
            started_at: Some(2),
            finished_at: None,
            done,
            total: 4,
            result: serde_json::Map::new(),
            error: None,
            version,
        }
    }

    fn update(from_version: i64, done: u32, status: TaskStatus, users: &[&str]) -> TaskUpdate {
        let mut after = task(from_version + 1, done, status);
        for user in users {
            after
                .result
                .insert((*user).to_owned(), json!({"status": "ok"}));
        }
        TaskUpdate {
            from_version,
            task: after,
        }
    }

    /// Follows `first` over a database that holds no task at all: a watcher that reads the task
    /// ends its stream (TaskNotFound), so a stream that goes on was fed by the updates alone.
    async fn watching(first: Task) -> (Hub, Stream, Watched, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        Store::migrate(&url).await.expect("migrate");
        let store = Store::connect(&url, 2).await.expect("connect");
        let hub = Hub::default();
        let changes = hub.subscribe();
        let (tx, rx) = mpsc::channel(16);
        let watched = Watched::default();
        let guard = watched.add(&first.id, first.version);
        tokio::spawn(follow(store, hub.clone(), first, changes, tx, guard));
        (hub, rx, watched, dir)
    }

    async fn next(stream: &mut Stream) -> Option<Task> {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("the watcher answers within 10 s")?;
        let task = message.expect("no error").task.expect("a task");
        Some(task_of(&task))
    }

    /// What a watcher sees of a task, in domain terms.
    fn task_of(t: &pb::Task) -> Task {
        let progress = t.progress.expect("progress");
        let status = pb::TaskStatus::try_from(t.status).expect("known status");
        let mut result = serde_json::Map::new();
        for user in t.result.as_ref().expect("result").fields.keys() {
            result.insert(user.clone(), json!({"status": "ok"}));
        }
        Task {
            status: status_of(status).expect("status"),
            done: progress.done,
            result,
            updated_at: crate::grpc::convert::micros(t.updated_at.as_ref().expect("updated"))
                .expect("micros"),
            ..task(0, 0, TaskStatus::Pending)
        }
    }

    #[tokio::test]
    async fn the_workers_updates_reach_watchers_without_reading_the_task() {
        let (hub, mut stream, watched, _dir) = watching(task(1, 0, TaskStatus::Running)).await;
        assert_eq!(next(&mut stream).await.expect("first").done, 0);

        hub.task_updated(update(1, 2, TaskStatus::Running, &["a", "b"]));
        let seen = next(&mut stream).await.expect("the first chunk");
        assert_eq!((seen.done, seen.updated_at), (2, 12));
        assert_eq!(seen.result.keys().collect::<Vec<_>>(), ["a", "b"]);
        // The poll loop (changes by other replicas) knows version 2 was sent: it will not make
        // every watcher read the task again for it.
        tokio::time::timeout(Duration::from_secs(10), async {
            while watched.lock().get("t1").map(|e| e.1) != Some(2) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the watched version follows what was sent");

        // An update the watcher has already seen (its first read came later) is not sent again.
        hub.task_updated(update(0, 0, TaskStatus::Running, &[]));
        hub.task_updated(update(2, 4, TaskStatus::Completed, &["c", "d"]));
        let last = next(&mut stream).await.expect("the last chunk");
        assert_eq!((last.done, last.status), (4, TaskStatus::Completed));
        assert_eq!(
            last.result.keys().collect::<Vec<_>>(),
            ["a", "b", "c", "d"],
            "results accumulate over the updates"
        );
        assert!(
            next(&mut stream).await.is_none(),
            "a finished task ends the stream"
        );
    }

    #[tokio::test]
    async fn a_gap_in_the_updates_is_bridged_by_reading_the_task() {
        let (hub, mut stream, _watched, _dir) = watching(task(1, 0, TaskStatus::Running)).await;
        next(&mut stream).await.expect("first");
        // Version 2 was never announced: the watcher reads the task, which here is gone.
        hub.task_updated(update(2, 4, TaskStatus::Completed, &["a", "b", "c", "d"]));
        assert!(
            next(&mut stream).await.is_none(),
            "the watcher read the task (and found it purged) instead of applying an update it cannot place"
        );
    }
}
