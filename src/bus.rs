//! In-process signals between the RPC handlers and the worker: "there is new work", "task X
//! changed" (with the change, when the worker committed it), "we are shutting down" (a
//! `CancellationToken`, so that whatever `server::run` starts stops on the same signal). Changes made
//! by other replicas are seen by polling the task row (see `grpc::tasks`), so this bus only
//! shortens the local path.
use std::sync::Arc;

use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::task::TaskUpdate;

/// "Task X changed": with the change itself when the worker that committed it sends it, so that
/// watchers need not read the task again.
#[derive(Debug)]
pub struct TaskChanged {
    pub task_id: String,
    pub update: Option<TaskUpdate>,
}

#[derive(Clone)]
pub struct Bus {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    work: Notify,
    changes: broadcast::Sender<Arc<TaskChanged>>,
    events: watch::Sender<u64>,
    shutdown: CancellationToken,
}

impl Default for Bus {
    fn default() -> Self {
        let (changes, _) = broadcast::channel(1024);
        let (events, _) = watch::channel(0);
        Bus {
            inner: std::sync::Arc::new(Inner {
                work: Notify::new(),
                changes,
                events,
                shutdown: CancellationToken::new(),
            }),
        }
    }
}

impl Bus {
    /// A task was enqueued: wake an idle worker.
    pub fn work_added(&self) {
        self.inner.work.notify_one();
    }

    pub async fn wait_for_work(&self) {
        self.inner.work.notified().await;
    }

    /// A task's status or progress changed; watchers read it again.
    pub fn task_changed(&self, task_id: &str) {
        let _ = self.inner.changes.send(Arc::new(TaskChanged {
            task_id: task_id.to_owned(),
            update: None,
        }));
    }

    /// A task changed as `update` says (committed by this process).
    pub fn task_updated(&self, update: TaskUpdate) {
        let _ = self.inner.changes.send(Arc::new(TaskChanged {
            task_id: update.task.id.clone(),
            update: Some(update),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TaskChanged>> {
        self.inner.changes.subscribe()
    }

    /// This process committed change-feed events: wake its followers.
    pub fn events_appended(&self) {
        self.inner.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever this process commits change-feed events.
    pub fn events_watch(&self) -> watch::Receiver<u64> {
        self.inner.events.subscribe()
    }

    pub fn shut_down(&self) {
        self.inner.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Resolves once shutdown has begun.
    pub async fn shutting_down(&self) {
        self.inner.shutdown.cancelled().await;
    }

    /// The shutdown signal itself, for what stops with the process but does not need the rest
    /// of the bus (the health-only port, `/metrics`, the gauge sampler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }
}
