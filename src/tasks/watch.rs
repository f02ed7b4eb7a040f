//! Following tasks for WatchTask: a stream of a task's states until it ends. Changes this
//! process's worker commits arrive through the bus with the task as it left it; changes made by
//! another replica (or a cancel) are noticed by one loop that polls the versions of every watched
//! task, so the cost stays one query per interval however many watch.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, TaskChanged};
use crate::domain::task::Task;
use crate::error::Error;
use crate::store::Store;

/// How often the watched tasks' rows are re-read: bounds how late a change made by another
/// replica arrives (the local worker's changes arrive at once through the bus).
const WATCH_POLL: Duration = Duration::from_millis(100);

/// A task's states, the current one first, until a terminal state, the watcher leaving, or
/// shutdown (which ends the stream with [`Error::ShuttingDown`]).
pub type TaskStream = ReceiverStream<Result<Task, Error>>;

/// Starts task streams; one per process.
#[derive(Clone)]
pub struct Watcher {
    store: Store,
    bus: Bus,
    watched: Watched,
    /// Where the loops feeding the streams run, so the server waits for them (and their last
    /// reads) before it closes the pool.
    tasks: TaskTracker,
}

impl Watcher {
    /// Also starts, on `tasks`, the loop that notices changes made by other replicas; it stops
    /// when the bus shuts down, and the tracker's owner waits for it.
    pub fn new(store: Store, bus: Bus, tasks: &TaskTracker) -> Self {
        let watched = Watched::default();
        tasks.spawn(poll_watched(store.clone(), bus.clone(), watched.clone()));
        Watcher {
            store,
            bus,
            watched,
            tasks: tasks.clone(),
        }
    }

    /// Follows `task_id`; `TaskNotFound` at once if there is no such task.
    pub async fn watch(&self, task_id: &str) -> Result<TaskStream, Error> {
        // Subscribe before the first read so that no change can fall between the two.
        let changes = self.bus.subscribe();
        let first = self.store.get_task(task_id).await?;
        let (tx, rx) = mpsc::channel(16);
        let guard = self.watched.add(task_id, first.version);
        self.tasks.spawn(follow(
            self.store.clone(),
            self.bus.clone(),
            first,
            changes,
            tx,
            guard,
        ));
        Ok(ReceiverStream::new(rx))
    }
}

/// The tasks this process's watchers follow, with the last version seen of each.
#[derive(Clone, Default)]
struct Watched {
    tasks: Arc<Mutex<HashMap<String, (usize, i64)>>>,
}

impl Watched {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (usize, i64)>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
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

async fn poll_watched(store: Store, bus: Bus, watched: Watched) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WATCH_POLL) => {}
            () = bus.shutting_down() => return,
        }
        let ids: Vec<String> = watched.lock().keys().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let versions = match store.task_versions(ids).await {
            Ok(versions) => versions,
            Err(err) => {
                tracing::debug!(error = %crate::error::Chain(&err), "reading watched tasks failed");
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
            bus.task_changed(&id);
        }
    }
}

/// Streams `first`, then every change, until a terminal state, the client leaving, or shutdown.
/// A change this process's worker committed comes with the task as it left it and is applied to
/// the task already sent; any other change (another replica's, a cancel, a missed update) is read
/// from the database.
async fn follow(
    store: Store,
    bus: Bus,
    first: Task,
    mut changes: broadcast::Receiver<Arc<TaskChanged>>,
    tx: mpsc::Sender<Result<Task, Error>>,
    watching: WatchGuard,
) {
    let mut seen = first;
    if tx.send(Ok(seen.clone())).await.is_err() || seen.status.is_terminal() {
        return;
    }
    while !seen.status.is_terminal() {
        let change = tokio::select! {
            () = tx.closed() => return,
            () = bus.shutting_down() => {
                let _ = tx.send(Err(Error::ShuttingDown("roster is shutting down; watch again"))).await;
                return;
            }
            changed = changes.recv() => match changed {
                Ok(change) if change.task_id != seen.id => continue,
                Ok(change) => change,
                Err(broadcast::error::RecvError::Closed) => return,
                // Lagged: some announcements were missed; read the task.
                Err(broadcast::error::RecvError::Lagged(_)) => {
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
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            },
        }
        if tx.send(Ok(seen.clone())).await.is_err() {
            return;
        }
        watching.sent(seen.version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::{TaskKind, TaskStatus, TaskUpdate};
    use serde_json::json;

    type Stream = mpsc::Receiver<Result<Task, Error>>;

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
    async fn watching(first: Task) -> (Bus, Stream, Watched, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        Store::migrate(&url).await.expect("migrate");
        let store = Store::connect(&url, 2).await.expect("connect");
        let bus = Bus::default();
        let changes = bus.subscribe();
        let (tx, rx) = mpsc::channel(16);
        let watched = Watched::default();
        let guard = watched.add(&first.id, first.version);
        tokio::spawn(follow(store, bus.clone(), first, changes, tx, guard));
        (bus, rx, watched, dir)
    }

    async fn next(stream: &mut Stream) -> Option<Task> {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("the watcher answers within 10 s")?;
        Some(message.expect("no error"))
    }

    #[tokio::test]
    async fn the_workers_updates_reach_watchers_without_reading_the_task() {
        let (bus, mut stream, watched, _dir) = watching(task(1, 0, TaskStatus::Running)).await;
        assert_eq!(next(&mut stream).await.expect("first").done, 0);

        bus.task_updated(update(1, 2, TaskStatus::Running, &["a", "b"]));
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
        bus.task_updated(update(0, 0, TaskStatus::Running, &[]));
        bus.task_updated(update(2, 4, TaskStatus::Completed, &["c", "d"]));
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
        let (bus, mut stream, _watched, _dir) = watching(task(1, 0, TaskStatus::Running)).await;
        next(&mut stream).await.expect("first");
        // Version 2 was never announced: the watcher reads the task, which here is gone.
        bus.task_updated(update(2, 4, TaskStatus::Completed, &["a", "b", "c", "d"]));
        assert!(
            next(&mut stream).await.is_none(),
            "the watcher read the task (and found it purged) instead of applying an update it cannot place"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream_with_shutting_down() {
        let (bus, mut stream, _watched, _dir) = watching(task(1, 0, TaskStatus::Running)).await;
        next(&mut stream).await.expect("first");
        bus.shut_down();
        let end = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("answers")
            .expect("an error before the end");
        assert!(matches!(end, Err(Error::ShuttingDown(_))), "{end:?}");
    }
}
