//! The task queue: enqueue (together with the users' immediate change), claim with a lease,
//! per-item commits (with each item's effect on roster's own data), progress, cancel, reads and
//! purge. Row mapping lives in `task_rows`, the lifecycle writes on users in `lifecycle`.
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde_json::{Map, Value};

use super::entities::task::{self, Column as T};
use super::entities::task_item::{self, Column as I};
use super::events::{self, NewEvent};
use super::lifecycle::apply_item_effect;
use super::task_rows::{
    active, count, decodable, decode, item_result, new_item_rows, new_task_id, new_task_row,
    to_task,
};
use super::{Store, WriteTx};
use crate::domain::effects::ItemEffect;
use crate::domain::task::{
    ItemOutcome, ItemStatus, MAX_TASK_ATTEMPTS, NewTask, Task, TaskError, TaskKind, TaskPayload,
    TaskStatus, TaskUpdate, completion, too_many_attempts, undecodable_payload,
};
use crate::domain::time::Micros;
use crate::domain::user::User;
use crate::error::{Error, Result};

/// A task this process holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub kind: TaskKind,
    pub payload: TaskPayload,
}

/// The next item of a claimed task still to do.
#[derive(Debug, Clone)]
pub struct PendingItem {
    pub position: i32,
    pub user_id: String,
}

/// What happened when the worker tried to commit an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemCommit {
    Done,
    /// Done, and the task has taken its terminal status.
    Finished,
    /// Another worker owns the task now (our lease expired); nothing was written.
    LeaseLost,
    /// Done, and the task is now `canceled`: a cancel was requested meanwhile, so the items after
    /// this chunk stay pending.
    Canceled,
}

/// What a claim found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// This process holds the task's lease now; the update is the claim, for watchers.
    Claimed(Claimed, TaskUpdate),
    /// The candidate ended without running (canceled, or failed as poison); the update says so,
    /// for watchers.
    Ended(TaskUpdate),
    /// Nothing to run.
    Nothing,
}

/// Unfinished work, for the queue gauges.
#[derive(Debug, Clone, Copy)]
pub struct TaskQueue {
    /// Tasks not yet finished (pending, running or waiting).
    pub depth: u64,
    /// How long the oldest pending task has waited to be claimed.
    pub oldest_pending_age: std::time::Duration,
}

impl Store {
    /// Applies the users' immediate state change and enqueues the task, in one transaction.
    /// A `request_id` seen before returns that task's id and changes nothing. A deactivation or
    /// reactivation that changes no user enqueues nothing and returns an empty task id.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(kind = new.kind.as_str(), count = new.user_ids.len()))]
    pub async fn enqueue_lifecycle(&self, new: NewTask) -> Result<(String, Vec<User>)> {
        let mut tx = self.write().await?;
        if let Some(request_id) = &new.request_id {
            // Retries of one request may arrive together: the first to take this lock enqueues,
            // the others wait and then find its task. (SQLite's writer slot already serializes.)
            if self.backend() == sea_orm::DatabaseBackend::Postgres {
                tx.txn
                    .execute_raw(sea_orm::Statement::from_sql_and_values(
                        sea_orm::DatabaseBackend::Postgres,
                        "SELECT pg_advisory_xact_lock(hashtext($1))",
                        [request_id.clone().into()],
                    ))
                    .await?;
            }
            let seen = task::Entity::find()
                .filter(T::RequestId.eq(request_id.clone()))
                .one(&tx.txn)
                .await?;
            if let Some(seen) = seen {
                return Ok((seen.id, Vec::new()));
            }
        }
        let (immediate, now) = self.change_named_users(&mut tx, &new).await?;
        if !immediate.enqueues_task() {
            // Nothing was written; the transaction ends without a task.
            return Ok((String::new(), immediate.users));
        }
        let events = immediate
            .events()
            .map(|(kind, user)| NewEvent::user(kind, user))
            .collect();
        let id = new_task_id();
        task::Entity::insert(new_task_row(&id, &new, now)?)
            .exec_without_returning(&tx.txn)
            .await?;
        task_item::Entity::insert_many(new_item_rows(&id, &new.user_ids, now))
            .exec_without_returning(&tx.txn)
            .await?;
        let TaskPayload::V1(payload) = &new.payload;
        events::append(&tx.txn, &payload.actor(), now, events).await?;
        tx.commit().await?;
        Ok((id, immediate.users))
    }

    /// Claims the oldest runnable task whose lease is free or expired: `FOR UPDATE SKIP LOCKED`
    /// picks a candidate without waiting on other claimers, and the guarded update makes the claim
    /// exclusive on both databases. With the claim comes the task as it is after it, for watchers.
    ///
    /// Only tasks of a kind and payload version this binary knows are candidates (see
    /// `task_rows::decodable`); the others are never claimed here, and wait for a binary that
    /// knows them. A candidate that ends instead of running comes back as `Claim::Ended`: one
    /// whose cancel was requested (`canceled`), one claimed `MAX_TASK_ATTEMPTS` times in a row
    /// without progress or whose payload does not decode after all (`failed`).
    pub async fn claim_task(&self, owner: &str, lease_micros: i64) -> Result<Claim> {
        let mut tx = self.write().await?;
        let now = tx.now();
        let candidate = task::Entity::find()
            .filter(T::Status.is_in(active()))
            .filter(T::LeaseExpiresAt.is_null().or(T::LeaseExpiresAt.lt(now)))
            .filter(T::NotBefore.is_null().or(T::NotBefore.lte(now)))
            .filter(decodable(self.backend()))
            .order_by_asc(T::CreatedAt)
            .limit(1)
            .lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            )
            .one(&tx.txn)
            .await?;
        let Some(row) = candidate else {
            return Ok(Claim::Nothing);
        };
        let ending = if row.cancel_requested {
            Some((TaskStatus::Canceled, None))
        } else if row.attempts >= MAX_TASK_ATTEMPTS {
            Some((TaskStatus::Failed, Some(too_many_attempts(row.attempts))))
        } else {
            None
        };
        if let Some((status, error)) = ending {
            return end_unclaimed(tx, &row, status, error, now).await;
        }
        let (kind, payload) = match decode(&row) {
            Ok(decoded) => decoded,
            Err(why) => {
                let error = Some(undecodable_payload(why));
                return end_unclaimed(tx, &row, TaskStatus::Failed, error, now).await;
            }
        };
        let claimed = task::Entity::update_many()
            .col_expr(T::LeaseOwner, Expr::value(owner.to_owned()))
            .col_expr(T::LeaseExpiresAt, Expr::value(now + lease_micros))
            .col_expr(T::Status, Expr::value(TaskStatus::Running.as_str()))
            .col_expr(T::StartedAt, Expr::value(row.started_at.unwrap_or(now)))
            .col_expr(T::Attempts, Expr::col(T::Attempts).add(1))
            .col_expr(T::Version, Expr::col(T::Version).add(1))
            .col_expr(T::UpdatedAt, Expr::value(now))
            .filter(T::Id.eq(row.id.clone()))
            .filter(T::LeaseExpiresAt.is_null().or(T::LeaseExpiresAt.lt(now)))
            .exec(&tx.txn)
            .await?;
        if claimed.rows_affected != 1 {
            return Ok(Claim::Nothing);
        }
        let update = update_since(&tx.txn, row.version, &row.id, Map::new()).await?;
        tx.commit().await?;
        Ok(Claim::Claimed(
            Claimed {
                id: row.id,
                kind,
                payload,
            },
            update,
        ))
    }

    /// Unfinished tasks this binary leaves for another: of a kind or payload version it does not
    /// know.
    pub async fn undecodable_tasks(&self) -> Result<u64> {
        Ok(task::Entity::find()
            .filter(T::Status.is_in(active()))
            .filter(decodable(self.backend()).not())
            .count(self.conn())
            .await?)
    }

    pub async fn task_queue(&self) -> Result<TaskQueue> {
        let depth = task::Entity::find()
            .filter(T::Status.is_in(active()))
            .count(self.conn())
            .await?;
        let oldest: Option<i64> = task::Entity::find()
            .select_only()
            .column(T::CreatedAt)
            .filter(T::Status.eq(TaskStatus::Pending.as_str()))
            .order_by_asc(T::CreatedAt)
            .limit(1)
            .into_tuple()
            .one(self.conn())
            .await?;
        let age = oldest.map_or(0, |created| std::cmp::max(self.now() - created, 0));
        Ok(TaskQueue {
            depth,
            oldest_pending_age: std::time::Duration::from_micros(u64::try_from(age).unwrap_or(0)),
        })
    }

    /// Extends the lease; false when it is no longer ours.
    pub async fn renew_lease(&self, task_id: &str, owner: &str, lease_micros: i64) -> Result<bool> {
        let result = task::Entity::update_many()
            .col_expr(T::LeaseExpiresAt, Expr::value(self.now() + lease_micros))
            .filter(T::Id.eq(task_id.to_owned()))
            .filter(T::LeaseOwner.eq(owner.to_owned()))
            .filter(T::Status.is_in(active()))
            .exec(self.conn())
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Marks a task `waiting` (backing off before retrying a product) or `running` again; false
    /// when the lease is no longer ours.
    pub async fn set_task_waiting(
        &self,
        task_id: &str,
        owner: &str,
        waiting: bool,
    ) -> Result<bool> {
        let status = if waiting {
            TaskStatus::Waiting
        } else {
            TaskStatus::Running
        };
        let result = task::Entity::update_many()
            .col_expr(T::Status, Expr::value(status.as_str()))
            .col_expr(T::Version, Expr::col(T::Version).add(1))
            .col_expr(T::UpdatedAt, Expr::value(self.now()))
            .filter(T::Id.eq(task_id.to_owned()))
            .filter(T::LeaseOwner.eq(owner.to_owned()))
            .filter(T::Status.is_in([TaskStatus::Running.as_str(), TaskStatus::Waiting.as_str()]))
            .exec(self.conn())
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives the lease back (on shutdown), so the next process can take the task at once.
    /// The claim does not count as an attempt (see `MAX_TASK_ATTEMPTS`): it was handed back, not
    /// failed.
    pub async fn release_lease(&self, task_id: &str, owner: &str) -> Result<()> {
        let handed_back = Expr::case(T::Attempts.gt(0), Expr::col(T::Attempts).sub(1)).finally(0);
        task::Entity::update_many()
            .col_expr(T::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(T::LeaseExpiresAt, Expr::value(Option::<i64>::None))
            .col_expr(T::Attempts, handed_back.into())
            .filter(T::Id.eq(task_id.to_owned()))
            .filter(T::LeaseOwner.eq(owner.to_owned()))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// The items of a task still to do, in order.
    pub async fn pending_items(&self, task_id: &str) -> Result<Vec<PendingItem>> {
        let rows = task_item::Entity::find()
            .filter(I::TaskId.eq(task_id.to_owned()))
            .filter(I::Status.eq(ItemStatus::Pending.as_str()))
            .order_by_asc(I::Position)
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| PendingItem {
                position: r.position,
                user_id: r.user_id,
            })
            .collect())
    }

    /// Commits a chunk of items: roster's own effect on each user, the items' outcomes and the
    /// task's progress, in one transaction, and only while `owner` holds the lease. Items an
    /// earlier holder of the lease already committed are skipped (never applied twice). With
    /// `last`, the chunk ends the task's list and the task takes its terminal status in the same
    /// transaction; so does a task whose cancel was requested (`canceled`, after this chunk).
    /// With what it wrote comes the task as it is after the commit, for watchers (none when it
    /// wrote nothing).
    pub async fn commit_items(
        &self,
        claimed: &Claimed,
        owner: &str,
        items: &[(PendingItem, ItemOutcome)],
        last: bool,
    ) -> Result<(ItemCommit, Option<TaskUpdate>)> {
        let mut tx = self.write().await?;
        let Some(row) = task::Entity::find_by_id(claimed.id.clone())
            .lock_exclusive()
            .one(&tx.txn)
            .await?
        else {
            return Ok((ItemCommit::LeaseLost, None));
        };
        // Once the task is locked: `updated_at` is when the change was made, not when it started
        // to wait (each user's time is kept from going back by `apply_item_effect`).
        let now = tx.now();
        if row.lease_owner.as_deref() != Some(owner)
            || row.status.parse().map_or(true, TaskStatus::is_terminal)
        {
            return Ok((ItemCommit::LeaseLost, None));
        }
        // The task row is locked: no other holder can mark these items until we commit.
        let still_pending: std::collections::HashSet<i32> = task_item::Entity::find()
            .select_only()
            .column(I::Position)
            .filter(I::TaskId.eq(claimed.id.clone()))
            .filter(I::Position.is_in(items.iter().map(|(item, _)| item.position)))
            .filter(I::Status.eq(ItemStatus::Pending.as_str()))
            .into_tuple::<i32>()
            .all(&tx.txn)
            .await?
            .into_iter()
            .collect();
        let todo: Vec<&(PendingItem, ItemOutcome)> = items
            .iter()
            .filter(|(item, _)| still_pending.contains(&item.position))
            .collect();
        // Items with the same outcome (usually all of them) are marked by one statement.
        let mut groups: Vec<(ItemStatus, Value, Vec<i32>)> = Vec::new();
        let mut results = Map::new();
        for (item, outcome) in &todo {
            let (status, result) = (outcome.status(), outcome.result());
            results.insert(item.user_id.clone(), result.clone());
            match groups
                .iter_mut()
                .find(|(s, r, _)| *s == status && *r == result)
            {
                Some((_, _, positions)) => positions.push(item.position),
                None => groups.push((status, result, vec![item.position])),
            }
        }
        for (status, result, positions) in groups {
            task_item::Entity::update_many()
                .col_expr(I::Status, Expr::value(status.as_str()))
                .col_expr(I::Result, Expr::value(result))
                .col_expr(I::UpdatedAt, Expr::value(now))
                .filter(I::TaskId.eq(claimed.id.clone()))
                .filter(I::Position.is_in(positions))
                .exec(&tx.txn)
                .await?;
        }
        // roster's own effect applies whatever the products answered: a product that failed is
        // named in the item's error, and the user stays as the request said.
        let effect = ItemEffect::of(claimed.kind, &claimed.payload);
        let mut events = Vec::new();
        for (item, _) in &todo {
            if let Some(event) = apply_item_effect(&tx.txn, effect, &item.user_id, now).await? {
                events.push(event);
            }
        }
        let TaskPayload::V1(payload) = &claimed.payload;
        events::append(&tx.txn, &payload.actor(), now, events).await?;
        if !todo.is_empty() {
            task::Entity::update_many()
                .col_expr(T::Done, Expr::col(T::Done).add(count(todo.len())))
                // `attempts` counts the claims since the task last made progress.
                .col_expr(T::Attempts, Expr::value(0))
                .col_expr(T::Version, Expr::col(T::Version).add(1))
                .col_expr(T::UpdatedAt, Expr::value(now))
                .col_expr(T::Status, Expr::value(TaskStatus::Running.as_str()))
                .filter(T::Id.eq(claimed.id.clone()))
                .exec(&tx.txn)
                .await?;
        }
        // A cancel requested meanwhile still keeps this chunk: the products were told about
        // its users, so roster's side of those items holds too. The rest stays pending.
        let outcome = if last {
            complete(&tx.txn, &row, now).await?;
            ItemCommit::Finished
        } else if row.cancel_requested {
            finish(&tx.txn, &row.id, TaskStatus::Canceled, None, now).await?;
            ItemCommit::Canceled
        } else {
            ItemCommit::Done
        };
        let changed = !todo.is_empty() || outcome != ItemCommit::Done;
        let update = if changed {
            Some(update_since(&tx.txn, row.version, &row.id, results).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok((outcome, update))
    }

    /// Sets the terminal status once every item is done: `completed`, or `failed` when any item
    /// ended in error.
    pub async fn complete_task(&self, task_id: &str, owner: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let Some(row) = task::Entity::find_by_id(task_id.to_owned())
            .lock_exclusive()
            .one(&tx.txn)
            .await?
        else {
            return Ok(());
        };
        let now = tx.now();
        if row.lease_owner.as_deref() != Some(owner) {
            return Ok(());
        }
        complete(&tx.txn, &row, now).await?;
        tx.commit().await
    }

    /// A task with its per-user results.
    pub async fn get_task(&self, task_id: &str) -> Result<Task> {
        let row = task::Entity::find_by_id(task_id.to_owned())
            .one(self.conn())
            .await?
            .ok_or_else(|| Error::TaskNotFound(task_id.to_owned()))?;
        let items = task_item::Entity::find()
            .filter(I::TaskId.eq(task_id.to_owned()))
            .filter(I::Status.ne(ItemStatus::Pending.as_str()))
            .order_by_asc(I::Position)
            .all(self.conn())
            .await?;
        to_task(row, items.into_iter().map(item_result).collect())
    }

    /// The change counters of the given tasks (those that exist), in one query.
    pub async fn task_versions(&self, task_ids: Vec<String>) -> Result<Vec<(String, i64)>> {
        Ok(task::Entity::find()
            .select_only()
            .column(T::Id)
            .column(T::Version)
            .filter(T::Id.is_in(task_ids))
            .into_tuple()
            .all(self.conn())
            .await?)
    }

    /// Newest first; `after` is the (created_at, id) of the last task of the previous page.
    pub async fn list_tasks(
        &self,
        status: Option<TaskStatus>,
        kind: Option<TaskKind>,
        limit: u64,
        after: Option<(Micros, String)>,
    ) -> Result<Vec<Task>> {
        let mut query = task::Entity::find();
        if let Some(status) = status {
            query = query.filter(T::Status.eq(status.as_str()));
        }
        if let Some(kind) = kind {
            query = query.filter(T::Kind.eq(kind.as_str()));
        }
        if let Some((created_at, id)) = after {
            query = query.filter(
                T::CreatedAt
                    .lt(created_at)
                    .or(T::CreatedAt.eq(created_at).and(T::Id.lt(id))),
            );
        }
        let rows = query
            .order_by_desc(T::CreatedAt)
            .order_by_desc(T::Id)
            .limit(limit)
            .all(self.conn())
            .await?;
        rows.into_iter().map(|r| to_task(r, Map::new())).collect()
    }

    /// Requests cancellation: a pending task is canceled at once, a running one between items.
    pub async fn cancel_task(&self, task_id: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let row = task::Entity::find_by_id(task_id.to_owned())
            .lock_exclusive()
            .one(&tx.txn)
            .await?
            .ok_or_else(|| Error::TaskNotFound(task_id.to_owned()))?;
        // The lease is judged by the time once the task is locked, not before.
        let now = tx.now();
        let status = row.status.parse().unwrap_or(TaskStatus::Failed);
        if status.is_terminal() {
            return Err(Error::TaskFinished(task_id.to_owned()));
        }
        let lease_free = row.lease_expires_at.is_none_or(|t| t < now);
        if status == TaskStatus::Pending || lease_free {
            finish(&tx.txn, task_id, TaskStatus::Canceled, None, now).await?;
        } else {
            task::Entity::update_many()
                .col_expr(T::CancelRequested, Expr::value(true))
                .col_expr(T::Version, Expr::col(T::Version).add(1))
                .col_expr(T::UpdatedAt, Expr::value(now))
                .filter(T::Id.eq(task_id.to_owned()))
                .exec(&tx.txn)
                .await?;
        }
        tx.commit().await
    }

    /// Deletes finished tasks (and their items) that finished before `before`.
    pub async fn purge_tasks(&self, before: Micros) -> Result<u64> {
        let tx = self.write().await?;
        let old: Vec<String> = task::Entity::find()
            .select_only()
            .column(T::Id)
            .filter(T::FinishedAt.lt(before))
            .limit(1000)
            .into_tuple()
            .all(&tx.txn)
            .await?;
        if old.is_empty() {
            return Ok(0);
        }
        task_item::Entity::delete_many()
            .filter(I::TaskId.is_in(old.clone()))
            .exec(&tx.txn)
            .await?;
        let deleted = task::Entity::delete_many()
            .filter(T::Id.is_in(old))
            .exec(&tx.txn)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected)
    }
}

/// Ends a candidate of `claim_task` without claiming it, and says so for watchers.
async fn end_unclaimed(
    tx: WriteTx,
    row: &task::Model,
    status: TaskStatus,
    error: Option<TaskError>,
    now: Micros,
) -> Result<Claim> {
    finish(&tx.txn, &row.id, status, error, now).await?;
    let update = update_since(&tx.txn, row.version, &row.id, Map::new()).await?;
    tx.commit().await?;
    Ok(Claim::Ended(update))
}

/// The terminal status of a task whose items are all done: `completed`, or `failed` when any
/// item ended in error.
async fn complete(txn: &DatabaseTransaction, row: &task::Model, now: Micros) -> Result<()> {
    let errors = task_item::Entity::find()
        .filter(I::TaskId.eq(row.id.clone()))
        .filter(I::Status.eq(ItemStatus::Error.as_str()))
        .count(txn)
        .await?;
    let (status, error) = completion(errors, u32::try_from(row.total).unwrap_or_default());
    finish(txn, &row.id, status, error, now).await
}

async fn finish(
    txn: &DatabaseTransaction,
    task_id: &str,
    status: TaskStatus,
    error: Option<TaskError>,
    now: Micros,
) -> Result<()> {
    task::Entity::update_many()
        .col_expr(T::Status, Expr::value(status.as_str()))
        .col_expr(
            T::ErrorType,
            Expr::value(error.as_ref().map(|e| e.kind.clone())),
        )
        .col_expr(
            T::ErrorDescription,
            Expr::value(error.map(|e| e.description)),
        )
        .col_expr(T::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(T::LeaseExpiresAt, Expr::value(Option::<i64>::None))
        .col_expr(T::FinishedAt, Expr::value(now))
        .col_expr(T::UpdatedAt, Expr::value(now))
        .col_expr(T::Version, Expr::col(T::Version).add(1))
        .filter(T::Id.eq(task_id.to_owned()))
        .exec(txn)
        .await?;
    Ok(())
}

/// The task as this transaction left it, as an update from `from_version` that finished the
/// items in `results`.
async fn update_since(
    txn: &DatabaseTransaction,
    from_version: i64,
    task_id: &str,
    results: Map<String, Value>,
) -> Result<TaskUpdate> {
    let row = task::Entity::find_by_id(task_id.to_owned())
        .one(txn)
        .await?
        .ok_or_else(|| Error::Internal(format!("task {task_id} vanished in its transaction")))?;
    Ok(TaskUpdate {
        from_version,
        task: to_task(row, results)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::ActiveValue::Set;
    use serde_json::json;

    use super::*;
    use crate::domain::event::Actor;
    use crate::domain::task::{AnyTaskKind, LifecycleV1, TaskErrorKind};
    use crate::domain::user::UserFields;
    use crate::store::testing::on_every_store;

    const LEASE: i64 = 60_000_000;
    /// Longer than `LEASE`: the worker that held the lease is gone.
    const LEASE_RUNS_OUT: Duration = Duration::from_secs(61);

    async fn users(store: &Store, ids: &[&str]) {
        let fields = ids.iter().map(|id| UserFields::with_id(*id)).collect();
        store
            .upsert_users(fields, &Actor::default())
            .await
            .expect("users");
    }

    fn deactivate(ids: &[&str]) -> NewTask {
        NewTask {
            kind: TaskKind::DeactivateUsers,
            user_ids: ids.iter().map(|id| id.to_string()).collect(),
            payload: TaskPayload::V1(LifecycleV1::default()),
            request_id: None,
        }
    }

    /// Stores a pending task for `u1` as another roster binary might have: of `kind`, with
    /// `payload`.
    async fn foreign_task(store: &Store, kind: &str, payload: Value) -> String {
        let id = new_task_id();
        let mut row = new_task_row(&id, &deactivate(&["u1"]), store.now()).expect("row");
        row.kind = Set(kind.to_owned());
        row.payload = Set(payload);
        task::Entity::insert(row)
            .exec_without_returning(store.conn())
            .await
            .expect("insert task");
        task_item::Entity::insert_many(new_item_rows(&id, &["u1".to_owned()], store.now()))
            .exec_without_returning(store.conn())
            .await
            .expect("insert items");
        id
    }

    async fn row(store: &Store, id: &str) -> task::Model {
        task::Entity::find_by_id(id.to_owned())
            .one(store.conn())
            .await
            .expect("read task")
            .expect("the task")
    }

    fn claimed(claim: Claim) -> Claimed {
        match claim {
            Claim::Claimed(claimed, update) => {
                assert_eq!(update.task.status, TaskStatus::Running);
                claimed
            }
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    fn ended(claim: Claim) -> TaskUpdate {
        match claim {
            Claim::Ended(update) => update,
            other => panic!("expected the task to end, got {other:?}"),
        }
    }

    /// A task of a kind or payload version this binary does not know is never claimed here (not
    /// once, so never in a loop), is counted, and is listed like any other.
    #[tokio::test]
    async fn tasks_this_binary_cannot_decode_are_left_counted_and_listed() {
        on_every_store(|store, clock| async move {
            users(&store, &["u1"]).await;
            let unknown_kind = foreign_task(&store, "export_users", json!({"type": "V1"})).await;
            let new_version = foreign_task(
                &store,
                TaskKind::DeactivateUsers.as_str(),
                json!({"type": "V2", "shape": "new"}),
            )
            .await;
            clock.advance(Duration::from_millis(1));
            let (known, _) = store
                .enqueue_lifecycle(deactivate(&["u1"]))
                .await
                .expect("enqueue");
            assert_eq!(store.undecodable_tasks().await.expect("count"), 2);

            // The older tasks are passed by, however often the claim comes round.
            for _ in 0..3 {
                assert_eq!(
                    claimed(store.claim_task("w1", LEASE).await.expect("claim")).id,
                    known
                );
                clock.advance(LEASE_RUNS_OUT);
            }
            for id in [&unknown_kind, &new_version] {
                let row = row(&store, id).await;
                assert_eq!(row.status, TaskStatus::Pending.as_str(), "{id}");
                assert_eq!((row.attempts, row.lease_owner), (0, None), "{id}");
            }
            assert_eq!(store.undecodable_tasks().await.expect("count"), 2);

            let listed = store.list_tasks(None, None, 10, None).await.expect("list");
            let mut ids: Vec<&str> = listed.iter().map(|t| t.id.as_str()).collect();
            ids.sort_unstable();
            let mut all = [known.as_str(), &unknown_kind, &new_version];
            all.sort_unstable();
            assert_eq!(ids, all);
            let pending = store
                .list_tasks(Some(TaskStatus::Pending), None, 10, None)
                .await
                .expect("list pending");
            assert_eq!(pending.len(), 2);
            let task = store.get_task(&unknown_kind).await.expect("get");
            assert_eq!(task.kind, AnyTaskKind::Unknown("export_users".into()));
            assert_eq!(task.kind.as_str(), "export_users");
            assert_eq!(task.status, TaskStatus::Pending);
        })
        .await;
    }

    /// A task claimed `MAX_TASK_ATTEMPTS` times in a row without progress (its worker dies each
    /// time) ends `failed` at the next claim, instead of running again.
    #[tokio::test]
    async fn a_task_that_never_progresses_ends_failed_after_its_attempts() {
        on_every_store(|store, clock| async move {
            users(&store, &["u1"]).await;
            let (id, _) = store
                .enqueue_lifecycle(deactivate(&["u1"]))
                .await
                .expect("enqueue");
            for attempt in 1..=MAX_TASK_ATTEMPTS {
                let claim = claimed(store.claim_task("w1", LEASE).await.expect("claim"));
                assert_eq!(claim.id, id);
                assert_eq!(row(&store, &id).await.attempts, attempt);
                clock.advance(LEASE_RUNS_OUT);
            }
            let before = row(&store, &id).await.version;
            let update = ended(store.claim_task("w1", LEASE).await.expect("claim"));
            assert_eq!(update.from_version, before);
            assert_eq!(update.task.id, id);
            assert_eq!(update.task.status, TaskStatus::Failed);
            let error = update.task.error.clone().expect("an error");
            assert_eq!(error.kind, TaskErrorKind::TooManyAttempts.as_ref());
            assert!(
                error.description.contains("5 times"),
                "{}",
                error.description
            );
            assert!(update.task.finished_at.is_some());
            assert_eq!(store.get_task(&id).await.expect("get"), update.task);
            assert!(matches!(
                store.claim_task("w1", LEASE).await.expect("claim"),
                Claim::Nothing
            ));
        })
        .await;
    }

    /// Attempts count the claims since the task last made progress, and a claim handed back on
    /// shutdown is not one.
    #[tokio::test]
    async fn progress_and_hand_backs_do_not_use_up_attempts() {
        on_every_store(|store, clock| async move {
            users(&store, &["u1", "u2"]).await;
            let (id, _) = store
                .enqueue_lifecycle(deactivate(&["u1", "u2"]))
                .await
                .expect("enqueue");
            let claim = claimed(store.claim_task("w1", LEASE).await.expect("claim"));
            store.release_lease(&id, "w1").await.expect("release");
            assert_eq!(row(&store, &id).await.attempts, 0);

            let claim2 = claimed(store.claim_task("w2", LEASE).await.expect("claim"));
            assert_eq!(claim2.id, claim.id);
            assert_eq!(row(&store, &id).await.attempts, 1);
            let mut items = store.pending_items(&id).await.expect("items");
            let first = items.remove(0);
            let (committed, update) = store
                .commit_items(
                    &claim2,
                    "w2",
                    &[(first, ItemOutcome::Ok(Map::new()))],
                    false,
                )
                .await
                .expect("commit");
            assert_eq!(committed, ItemCommit::Done);
            assert_eq!(update.expect("an update").task.done, 1);
            assert_eq!(row(&store, &id).await.attempts, 0);
            clock.advance(LEASE_RUNS_OUT);
            claimed(store.claim_task("w3", LEASE).await.expect("claim"));
            assert_eq!(row(&store, &id).await.attempts, 1);
        })
        .await;
    }

    /// A payload of a version this binary reads that still does not decode is not run, or left
    /// pending for ever: the task ends `failed`, saying why.
    #[tokio::test]
    async fn a_payload_that_does_not_decode_ends_its_task_failed() {
        on_every_store(|store, _clock| async move {
            users(&store, &["u1"]).await;
            let id = foreign_task(
                &store,
                TaskKind::DeleteUsers.as_str(),
                json!({"type": "V1", "delete": {"user": "sideways"}}),
            )
            .await;
            assert_eq!(store.undecodable_tasks().await.expect("count"), 0);
            let update = ended(store.claim_task("w1", LEASE).await.expect("claim"));
            assert_eq!(update.task.id, id);
            assert_eq!(update.task.status, TaskStatus::Failed);
            let error = update.task.error.expect("an error");
            assert_eq!(error.kind, TaskErrorKind::UndecodablePayload.as_ref());
            assert!(
                error.description.contains("sideways"),
                "{}",
                error.description
            );
            assert_eq!(row(&store, &id).await.attempts, 0);
        })
        .await;
    }
}
