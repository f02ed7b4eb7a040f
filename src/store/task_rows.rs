//! The shape of a task's rows: a new task and its items as rows, a task row (with the results of
//! its finished items) as the domain's `Task`, and the statuses as stored. The queue's reads and
//! writes live in `task_queue`.
use sea_orm::sea_query::{Condition, Expr, ExprTrait, SimpleExpr};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseBackend};
use serde_json::{Map, Value, json};
use strum::IntoEnumIterator;

use super::entities::task::{self, Column as T};
use super::entities::task_item;
use crate::domain::task::{
    AnyTaskKind, ItemStatus, NewTask, Task, TaskError, TaskKind, TaskPayload, TaskStatus,
};
use crate::domain::time::Micros;
use crate::error::{Error, Result};

/// The unfinished statuses, as stored.
pub(super) fn active() -> [&'static str; 3] {
    TaskStatus::ACTIVE.map(TaskStatus::as_str)
}

/// The `type` (version) of a stored payload; `''` when it has none.
fn payload_version(backend: DatabaseBackend) -> SimpleExpr {
    Expr::cust(match backend {
        DatabaseBackend::Postgres => "COALESCE(payload ->> 'type', '')",
        _ => "COALESCE(json_extract(payload, '$.type'), '')",
    })
}

/// Tasks this binary can run: of a kind and a payload version it knows. The others are left
/// for a binary that knows them (a newer one, during a rolling deploy).
pub(super) fn decodable(backend: DatabaseBackend) -> Condition {
    Condition::all()
        .add(T::Kind.is_in(TaskKind::iter().map(TaskKind::as_str)))
        .add(payload_version(backend).is_in(TaskPayload::versions()))
}

/// The kind and payload of a task row that `decodable` selected; an error says why its payload
/// does not decode after all.
pub(super) fn decode(row: &task::Model) -> Result<(TaskKind, TaskPayload), String> {
    let kind = row
        .kind
        .parse()
        .map_err(|_| format!("unknown task kind {:?}", row.kind))?;
    let payload = serde_json::from_value(row.payload.clone()).map_err(|e| e.to_string())?;
    Ok((kind, payload))
}

/// A random task id (128 bits, hex).
pub(super) fn new_task_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The row of a task just enqueued: pending, nothing done, version 1.
pub(super) fn new_task_row(id: &str, new: &NewTask, now: Micros) -> Result<task::ActiveModel> {
    Ok(task::ActiveModel {
        id: Set(id.to_owned()),
        kind: Set(new.kind.as_str().to_owned()),
        status: Set(TaskStatus::Pending.as_str().to_owned()),
        request_id: Set(new.request_id.clone()),
        payload: Set(
            serde_json::to_value(&new.payload).map_err(|e| Error::Internal(e.to_string()))?
        ),
        total: Set(count(new.user_ids.len())),
        done: Set(0),
        error_type: Set(None),
        error_description: Set(None),
        cancel_requested: Set(false),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        not_before: Set(None),
        attempts: Set(0),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    })
}

/// The items of a task just enqueued, one per user in the request's order, all pending.
pub(super) fn new_item_rows<'a>(
    task_id: &'a str,
    user_ids: &'a [String],
    now: Micros,
) -> impl Iterator<Item = task_item::ActiveModel> + 'a {
    user_ids
        .iter()
        .enumerate()
        .map(move |(i, user_id)| task_item::ActiveModel {
            task_id: Set(task_id.to_owned()),
            position: Set(count(i)),
            user_id: Set(user_id.clone()),
            status: Set(ItemStatus::Pending.as_str().to_owned()),
            result: Set(None),
            updated_at: Set(now),
        })
}

/// A finished item's user and result (an item stored without a result shows its status).
pub(super) fn item_result(item: task_item::Model) -> (String, Value) {
    let result = item
        .result
        .unwrap_or_else(|| json!({ "status": item.status }));
    (item.user_id, result)
}

/// The task of `row`, with `result` as the results of the items it reports.
pub(super) fn to_task(row: task::Model, result: Map<String, Value>) -> Result<Task> {
    Ok(Task {
        kind: AnyTaskKind::from_stored(&row.kind),
        status: row
            .status
            .parse()
            .map_err(|_| Error::Internal(format!("unknown task status {}", row.status)))?,
        id: row.id,
        created_at: row.created_at,
        updated_at: row.updated_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        done: u32::try_from(row.done).unwrap_or_default(),
        total: u32::try_from(row.total).unwrap_or_default(),
        result,
        error: row.error_type.map(|kind| TaskError {
            kind,
            description: row.error_description.unwrap_or_default(),
        }),
        version: row.version,
    })
}

/// A count as the `total` and `done` columns hold it.
pub(super) fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
