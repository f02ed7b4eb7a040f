//! Tasks as callers see them: kinds, statuses, versioned payloads and per-item outcomes.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lifecycle::{DeleteOptions, LifecycleEvent};
use super::time::Micros;

/// Where a task is. The strings are stored in `tasks.status`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    Waiting,
    Completed,
    Failed,
    Canceled,
}

impl TaskStatus {
    /// Every status, in declaration order: strum's list, as an array for callers that iterate by
    /// value.
    pub const ALL: [TaskStatus; 6] = match <TaskStatus as strum::VariantArray>::VARIANTS {
        [a, b, c, d, e, f] => [*a, *b, *c, *d, *e, *f],
        _ => panic!("TaskStatus::ALL has room for every status"),
    };

    /// Unfinished: the worker may claim it, and it counts in the queue's depth.
    pub const ACTIVE: [TaskStatus; 3] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Canceled
        )
    }
}

/// What a task does to each of its users. The strings are stored in `tasks.kind` and shown on
/// the wire.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
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
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// `str::parse`, for callers that want an `Option`.
    pub fn parse(text: &str) -> Option<TaskKind> {
        text.parse().ok()
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
/// The variant's name is the stored payload's `type` (its version).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(tag = "type")]
pub enum TaskPayload {
    V1(LifecycleV1),
}

impl TaskPayload {
    /// The payload versions this binary reads (the `type` of a stored payload).
    pub fn versions() -> impl Iterator<Item = &'static str> {
        use strum::IntoEnumIterator;
        TaskPayload::iter().map(|p| p.version())
    }

    /// This payload's version, as stored in its `type`.
    pub fn version(&self) -> &'static str {
        self.into()
    }
}

/// A task's kind as a task shows it: one this binary runs, or the stored name of one that only
/// another roster binary knows (a newer one, during a rolling deploy). Tasks of an unknown kind
/// are left for a binary that knows it, and stay listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnyTaskKind {
    Known(TaskKind),
    Unknown(String),
}

impl AnyTaskKind {
    /// The kind a stored name names.
    pub fn from_stored(name: &str) -> AnyTaskKind {
        match name.parse() {
            Ok(kind) => AnyTaskKind::Known(kind),
            Err(_) => AnyTaskKind::Unknown(name.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AnyTaskKind::Known(kind) => kind.as_str(),
            AnyTaskKind::Unknown(name) => name,
        }
    }

    pub fn known(&self) -> Option<TaskKind> {
        match self {
            AnyTaskKind::Known(kind) => Some(*kind),
            AnyTaskKind::Unknown(_) => None,
        }
    }
}

impl From<TaskKind> for AnyTaskKind {
    fn from(kind: TaskKind) -> Self {
        AnyTaskKind::Known(kind)
    }
}

impl PartialEq<TaskKind> for AnyTaskKind {
    fn eq(&self, other: &TaskKind) -> bool {
        self.known() == Some(*other)
    }
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

/// Where one user's item of a task is. The strings are stored in `task_items.status` and are the
/// `status` of the item's result.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    Ok,
    Error,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Outcome of one user's item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Pending,
    Ok(Map<String, Value>),
    Error(String, Map<String, Value>),
}

impl ItemOutcome {
    pub fn status(&self) -> ItemStatus {
        match self {
            ItemOutcome::Pending => ItemStatus::Pending,
            ItemOutcome::Ok(_) => ItemStatus::Ok,
            ItemOutcome::Error(..) => ItemStatus::Error,
        }
    }

    /// The item's result as a task shows it: `{"status": "ok", ...}`, or `{"status": "error",
    /// "error": "...", ...}`, with what the outcome adds.
    pub fn result(&self) -> Value {
        let mut out = Map::new();
        out.insert("status".into(), Value::from(self.status().as_str()));
        match self {
            ItemOutcome::Pending => {}
            ItemOutcome::Ok(extra) => out.extend(extra.clone()),
            ItemOutcome::Error(message, extra) => {
                out.insert("error".into(), Value::from(message.as_str()));
                out.extend(extra.clone());
            }
        }
        Value::Object(out)
    }
}

/// A task as GetTask / WatchTask show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub kind: AnyTaskKind,
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

/// Why roster ended a task `failed` (the `type` of its error). The strings are stored in
/// `tasks.error_type` and shown on the wire.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskErrorKind {
    /// Every item ran; some failed (see the task's result).
    ItemsFailed,
    /// The task was claimed `MAX_TASK_ATTEMPTS` times in a row without making progress.
    TooManyAttempts,
    /// The task's payload is of a version this binary reads, yet does not decode.
    UndecodablePayload,
}

impl TaskError {
    pub fn new(kind: TaskErrorKind, description: impl Into<String>) -> TaskError {
        TaskError {
            kind: <&str>::from(kind).to_owned(),
            description: description.into(),
        }
    }
}

/// Claims a task may take in a row without making progress (committing an item); at the next
/// claim it ends `failed` (`TOO_MANY_ATTEMPTS`) instead of running again. A claim handed back on
/// shutdown does not count.
pub const MAX_TASK_ATTEMPTS: i32 = 5;

/// A task whose claims keep ending without progress (a worker that crashes on it, say): how it
/// ends, after `attempts` claims.
pub fn too_many_attempts(attempts: i32) -> TaskError {
    TaskError::new(
        TaskErrorKind::TooManyAttempts,
        format!("claimed {attempts} times in a row without finishing an item; given up"),
    )
}

/// A task whose payload does not decode, for `why`.
pub fn undecodable_payload(why: impl std::fmt::Display) -> TaskError {
    TaskError::new(
        TaskErrorKind::UndecodablePayload,
        format!("the task's payload cannot be read: {why}"),
    )
}

/// How a task whose items are all done ends: `completed`, or `failed` when any of its `total`
/// items (`errors` of them) ended in error.
pub fn completion(errors: u64, total: u32) -> (TaskStatus, Option<TaskError>) {
    if errors == 0 {
        return (TaskStatus::Completed, None);
    }
    (
        TaskStatus::Failed,
        Some(TaskError::new(
            TaskErrorKind::ItemsFailed,
            format!("{errors} of {total} users failed; see result"),
        )),
    )
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    /// Stored in `tasks.status` / `tasks.kind` / `task_items.status` and shown on the wire: these
    /// strings never change.
    #[test]
    fn task_strings_are_pinned() {
        let statuses: Vec<&str> = TaskStatus::iter().map(TaskStatus::as_str).collect();
        assert_eq!(
            statuses,
            [
                "pending",
                "running",
                "waiting",
                "completed",
                "failed",
                "canceled"
            ]
        );
        assert_eq!(
            TaskStatus::ALL.to_vec(),
            TaskStatus::iter().collect::<Vec<_>>()
        );
        for status in TaskStatus::iter() {
            assert_eq!(status.as_str().parse(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        let kinds: Vec<&str> = TaskKind::iter().map(TaskKind::as_str).collect();
        assert_eq!(
            kinds,
            [
                "deactivate_users",
                "reactivate_users",
                "delete_users",
                "restore_users"
            ]
        );
        for kind in TaskKind::iter() {
            assert_eq!(TaskKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(TaskKind::parse("export_users"), None);
        let items: Vec<&str> = ItemStatus::iter().map(ItemStatus::as_str).collect();
        assert_eq!(items, ["pending", "ok", "error"]);
        for item in ItemStatus::iter() {
            assert_eq!(item.as_str().parse(), Ok(item));
        }
    }

    #[test]
    fn error_types_and_payload_versions_are_pinned() {
        let kinds: Vec<&str> = TaskErrorKind::iter().map(<&str>::from).collect();
        assert_eq!(
            kinds,
            ["ITEMS_FAILED", "TOO_MANY_ATTEMPTS", "UNDECODABLE_PAYLOAD"]
        );
        assert_eq!(TaskPayload::versions().collect::<Vec<_>>(), ["V1"]);
        // The version strum names is the `type` serde stores.
        for payload in TaskPayload::iter() {
            let stored = serde_json::to_value(&payload).unwrap();
            assert_eq!(stored["type"], payload.version());
        }
    }

    #[test]
    fn unknown_kinds_keep_their_stored_name() {
        let known = AnyTaskKind::from_stored("delete_users");
        assert_eq!(known, TaskKind::DeleteUsers);
        assert_eq!(known.as_str(), "delete_users");
        let other = AnyTaskKind::from_stored("export_users");
        assert_eq!(other, AnyTaskKind::Unknown("export_users".into()));
        assert_eq!(other.as_str(), "export_users");
        assert_eq!(other.known(), None);
    }

    #[test]
    fn a_task_fails_when_any_item_failed() {
        assert_eq!(completion(0, 3), (TaskStatus::Completed, None));
        let (status, error) = completion(2, 3);
        assert_eq!(status, TaskStatus::Failed);
        assert_eq!(
            error,
            Some(TaskError {
                kind: "ITEMS_FAILED".into(),
                description: "2 of 3 users failed; see result".into(),
            })
        );
    }

    #[test]
    fn item_results_carry_their_status() {
        let mut extra = Map::new();
        extra.insert("products".into(), serde_json::json!({"chat": "ok"}));
        assert_eq!(
            ItemOutcome::Ok(extra.clone()).result(),
            serde_json::json!({"status": "ok", "products": {"chat": "ok"}})
        );
        assert_eq!(
            ItemOutcome::Error("product chat failed".into(), extra).result(),
            serde_json::json!({
                "status": "error",
                "error": "product chat failed",
                "products": {"chat": "ok"}
            })
        );
        assert_eq!(
            ItemOutcome::Pending.result(),
            serde_json::json!({"status": "pending"})
        );
    }
}
