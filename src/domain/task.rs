//! Tasks as callers see them: kinds, statuses, versioned payloads and per-item outcomes.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lifecycle::{DeleteOptions, LifecycleEvent};
use super::time::Micros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Pending,
    Running,
    Waiting,
    Completed,
    Failed,
    Canceled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Waiting,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Waiting => "waiting",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Canceled
        )
    }
}

/// What a task does to each of its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    DeactivateUsers,
    ReactivateUsers,
    DeleteUsers,
    RestoreUsers,
}

impl LifecycleV1 {
    /// Who asked, for the change feed.
    pub fn actor(&self) -> super::event::Actor {
        super::event::Actor::new(self.caller.clone(), self.created_by_id.clone())
    }
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [
        TaskKind::DeactivateUsers,
        TaskKind::ReactivateUsers,
        TaskKind::DeleteUsers,
        TaskKind::RestoreUsers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::DeactivateUsers => "deactivate_users",
            TaskKind::ReactivateUsers => "reactivate_users",
            TaskKind::DeleteUsers => "delete_users",
            TaskKind::RestoreUsers => "restore_users",
        }
    }

    pub fn parse(text: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether a request of this kind that changes no user enqueues no task. Deactivating
    /// deactivated users and reactivating active ones is a no-op: products were told when the
    /// state changed, so there is nothing to tell them again. (A delete still has product work
    /// to do for users deleted already, e.g. a hard delete after a soft one.)
    pub fn no_task_without_change(self) -> bool {
        matches!(self, TaskKind::DeactivateUsers | TaskKind::ReactivateUsers)
    }

    /// What the change feed records when a task of this kind changes a user's state.
    pub fn feed_event(self) -> super::event::EventKind {
        use super::event::EventKind;
        match self {
            TaskKind::DeactivateUsers => EventKind::UserDeactivated,
            TaskKind::ReactivateUsers => EventKind::UserReactivated,
            TaskKind::DeleteUsers => EventKind::UserDeleted,
            TaskKind::RestoreUsers => EventKind::UserRestored,
        }
    }

    /// The event products hear for each user of a task of this kind.
    pub fn event(self) -> LifecycleEvent {
        match self {
            TaskKind::DeactivateUsers => LifecycleEvent::Deactivated,
            TaskKind::ReactivateUsers => LifecycleEvent::Reactivated,
            TaskKind::DeleteUsers => LifecycleEvent::Deleted,
            TaskKind::RestoreUsers => LifecycleEvent::Restored,
        }
    }
}

/// A task's input. Payloads outlive deploys: a new shape is a new variant, old ones stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TaskPayload {
    V1(LifecycleV1),
}

/// Options of a lifecycle task (those not relevant to its kind stay at their defaults).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LifecycleV1 {
    #[serde(default)]
    pub mark_messages_deleted: bool,
    #[serde(default)]
    pub mark_channels_deleted: bool,
    #[serde(default)]
    pub restore_messages: bool,
    #[serde(default)]
    pub restore_channels: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_id: Option<String>,
    /// The authenticated calling service that asked, if any (the feed's actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// ReactivateUser: a new name set together with the reactivation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A lifecycle request, validated, ready to enqueue.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub kind: TaskKind,
    pub user_ids: Vec<String>,
    pub payload: TaskPayload,
    pub request_id: Option<String>,
}

/// Outcome of one user's item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Pending,
    Ok(Map<String, Value>),
    Error(String, Map<String, Value>),
}

/// A task as GetTask / WatchTask show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub done: u32,
    pub total: u32,
    /// Per user id: `{"status": "ok"}` or `{"status": "error", "error": "..."}`; finished items
    /// only.
    pub result: Map<String, Value>,
    pub error: Option<TaskError>,
    /// Bumped on every change; watchers compare it.
    pub version: i64,
}

/// A committed change of a task, as the process that made it knows it: the task right after the
/// change, with `result` holding only the items this change finished, and the version it
/// replaced. A watcher that has seen `from_version` applies it without reading the task again.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskUpdate {
    pub from_version: i64,
    pub task: Task,
}

impl TaskUpdate {
    /// Applies the update to `seen`, the task at `from_version`; false (and `seen` untouched)
    /// when `seen` is at another version, which only a read of the whole task can bridge.
    pub fn apply_to(&self, seen: &mut Task) -> bool {
        if seen.id != self.task.id || seen.version != self.from_version {
            return false;
        }
        let mut next = self.task.clone();
        let mut result = std::mem::take(&mut seen.result);
        result.append(&mut next.result);
        next.result = result;
        *seen = next;
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    pub kind: String,
    pub description: String,
}
