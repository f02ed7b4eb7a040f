//! Users: upsert, partial update, point reads and queries.
use std::collections::{HashMap, HashSet};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::Store;
use super::entities::user::{self, Column};
use super::entities::{device, user_block};
use super::events::{self, NewEvent};
use super::replace;
use super::values_list::push_row;
use crate::domain::event::{Actor, EventKind};
use crate::domain::partial::{PartialUpdate, Settable};
use crate::domain::query::{UserQuery, next_page_token};
use crate::domain::user::{User, UserFields, dotted_key_violation_in};
use crate::error::{Error, FieldViolation, Result};

/// Columns a replace or partial update writes; everything else on the row is roster's.
/// (`revoke_tokens_issued_before` is a token setting: a replace keeps it.)
pub const REPLACED_COLUMNS: [Column; 11] = [
    Column::Name,
    Column::Image,
    Column::Role,
    Column::Custom,
    Column::Language,
    Column::Invisible,
    Column::Teams,
    Column::TeamsRole,
    Column::PrivacySettings,
    Column::PushNotifications,
    Column::UpdatedAt,
];

/// A page of users and the token for the next one.
pub struct UserPage {
    pub users: Vec<User>,
    pub next_page_token: Option<String>,
}

impl Store {
    /// Creates or replaces users, all or nothing. Caller fields are replaced; server fields kept.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(count = batch.len()))]
    pub async fn upsert_users(&self, batch: Vec<UserFields>, actor: &Actor) -> Result<Vec<User>> {
        let mut violations: Vec<FieldViolation> = batch
            .iter()
            .flat_map(|f| {
                let at = format!("users[{}]", f.id);
                let dotted = dotted_key_violation_in(&f.custom, &format!("{at}.custom"));
                f.violations(&at).into_iter().chain(dotted)
            })
            .collect();
        let tx = self.write().await?;
        let scopes = self
            .role_scopes(&tx.txn, batch.iter().flat_map(UserFields::role_names))
            .await?;
        violations.extend(batch.iter().flat_map(|f| {
            f.role_violations(&format!("users[{}]", f.id), |r| scopes.get(r).copied())
        }));
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        // Rows are written, and on PostgreSQL locked, in id order, so that concurrent batches
        // cannot deadlock.
        let mut batch = batch;
        batch.sort_by(|a, b| a.id.cmp(&b.id));
        let now = self.now();
        let (mut users, kinds, owns) = match self.backend() {
            sea_orm::DatabaseBackend::Postgres => {
                // One statement writes and says what it did; see `replace`.
                let mut users: Vec<User> = batch.into_iter().map(|f| User::new(f, now)).collect();
                let mut done = replace::write(&tx.txn, &users).await?;
                let mut kinds = Vec::with_capacity(users.len());
                let mut owns = Vec::with_capacity(users.len());
                for user in &mut users {
                    let Some(replaced) = done.remove(&user.fields.id) else {
                        return Err(Error::UserDeleted(user.fields.id.clone()));
                    };
                    kinds.push(match replaced.created {
                        true => EventKind::UserCreated,
                        false => EventKind::UserUpdated,
                    });
                    replaced.server.apply(user);
                    owns.push(replaced.owns);
                }
                (users, kinds, owns)
            }
            _ => {
                let mut existing =
                    lock_user_rows(&tx.txn, batch.iter().map(|f| f.id.clone())).await?;
                if let Some(deleted) = existing.values().find(|r| r.model.deleted_at.is_some()) {
                    return Err(Error::UserDeleted(deleted.model.id.clone()));
                }
                let mut kinds = Vec::with_capacity(batch.len());
                let mut owns = Vec::with_capacity(batch.len());
                let users: Vec<User> = batch
                    .into_iter()
                    .map(|fields| match existing.remove(&fields.id) {
                        Some(row) => {
                            kinds.push(EventKind::UserUpdated);
                            owns.push(row.owns);
                            User {
                                fields,
                                updated_at: now,
                                ..User::from(row.model)
                            }
                        }
                        None => {
                            kinds.push(EventKind::UserCreated);
                            owns.push(Owns::NOTHING);
                            User::new(fields, now)
                        }
                    })
                    .collect();
                replace::write(&tx.txn, &users).await?;
                (users, kinds, owns)
            }
        };
        attach_owned(&tx.txn, &mut users, &owns).await?;
        let events = kinds
            .into_iter()
            .zip(&users)
            .map(|(kind, user)| NewEvent::user(kind, user))
            .collect();
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// Applies partial updates, all or nothing; each user is locked while it is read, merged and
    /// written, so concurrent updates of different keys all survive.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(count = updates.len()))]
    pub async fn update_users_partial(
        &self,
        updates: Vec<PartialUpdate>,
        actor: &Actor,
    ) -> Result<Vec<User>> {
        let mut seen = HashSet::new();
        for (i, update) in updates.iter().enumerate() {
            if !seen.insert(update.id.as_str()) {
                return Err(Error::invalid(
                    format!("users[{i}].id"),
                    "appears twice in the batch",
                ));
            }
        }
        let tx = self.write().await?;
        let mut rows = lock_user_rows(&tx.txn, updates.iter().map(|u| u.id.clone())).await?;
        let now = self.now();
        let mut users = Vec::with_capacity(updates.len());
        // Users whose update set a new revocation time: the feed says so with its own event.
        let mut revoked = HashSet::new();
        let mut violations = Vec::new();
        let mut owned = Vec::with_capacity(updates.len());
        // The rows as they were, to write back only what changed.
        let mut before = Vec::with_capacity(updates.len());
        // Roles a stored user holds exist (a role in use cannot be deleted): only a change of
        // roles needs them looked up.
        let mut roles_changed = false;
        for (i, update) in updates.iter().enumerate() {
            let UserRow { model: row, owns } = rows
                .remove(&update.id)
                .ok_or_else(|| Error::UserNotFound(update.id.clone()))?;
            if row.deleted_at.is_some() {
                return Err(Error::UserDeleted(row.id));
            }
            let row_before = row.clone();
            let mut user = User::from(row);
            let at = format!("users[{i}]");
            let current = Settable {
                fields: user.fields.clone(),
                revoke_tokens_issued_before: user.revoke_tokens_issued_before,
            };
            match update.apply(&current, &at) {
                Ok(next) => {
                    violations.extend(next.fields.violations(&at));
                    if next.revoke_tokens_issued_before.is_some()
                        && next.revoke_tokens_issued_before != user.revoke_tokens_issued_before
                    {
                        revoked.insert(user.fields.id.clone());
                    }
                    if next.fields.role_names().ne(user.fields.role_names()) {
                        roles_changed = true;
                    }
                    user.fields = next.fields;
                    user.revoke_tokens_issued_before = next.revoke_tokens_issued_before;
                    user.updated_at = now;
                    users.push(user);
                    owned.push(owns);
                    before.push(row_before);
                }
                Err(v) => violations.extend(v),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let scopes = if roles_changed {
            self.role_scopes(&tx.txn, users.iter().flat_map(|u| u.fields.role_names()))
                .await?
        } else {
            HashMap::new()
        };
        let violations: Vec<FieldViolation> = if !roles_changed {
            Vec::new()
        } else {
            users
                .iter()
                .enumerate()
                .flat_map(|(i, u)| {
                    u.fields
                        .role_violations(&format!("users[{i}]"), |r| scopes.get(r).copied())
                })
                .collect()
        };
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        // Every row exists and is locked.
        let mut written = REPLACED_COLUMNS.to_vec();
        written.push(Column::RevokeTokensIssuedBefore);
        update_changed(&tx.txn, &before, &mut users, &owned, &written).await?;
        let mut events = Vec::with_capacity(users.len() + revoked.len());
        for user in &users {
            events.push(NewEvent::user(EventKind::UserUpdated, user));
            if revoked.contains(&user.fields.id) {
                events.push(NewEvent::user(EventKind::UserTokensRevoked, user));
            }
        }
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// One user; a deleted user only with `include_deleted`.
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn get_user(&self, id: &str, include_deleted: bool) -> Result<User> {
        match self.point_reads.read(self.conn(), id).await? {
            Some(user) if include_deleted || user.deleted_at.is_none() => Ok(user),
            _ => Err(Error::UserNotFound(id.to_owned())),
        }
    }

    /// One user with its devices and blocks, deleted or not; `None` when there is no such row.
    pub(crate) async fn find_user(&self, id: &str) -> Result<Option<User>> {
        Ok(users_by_id(self.conn(), vec![id.to_owned()]).await?.pop())
    }

    /// The given users that exist and are not deleted, with devices and blocks, by id.
    pub(crate) async fn visible_users(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, User>> {
        let rows = fetch_rows(
            self.conn(),
            user::Entity::find()
                .filter(Column::Id.is_in(ids))
                .filter(Column::DeletedAt.is_null()),
        )
        .await?;
        let users = load_users(self.conn(), rows).await?;
        Ok(users
            .into_iter()
            .map(|u| (u.fields.id.clone(), u))
            .collect())
    }

    /// One page of a query (deleted users never appear).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn query_users(&self, query: &UserQuery) -> Result<UserPage> {
        let statement = super::query_sql::select_users(query, self.backend(), self.as_of_now())?;
        let mut rows = rows_of(self.conn(), statement).await?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let users = load_users(self.conn(), rows).await?;
        let next_page_token = match users.last() {
            Some(last) if more => Some(next_page_token(query, last)),
            _ => None,
        };
        Ok(UserPage {
            users,
            next_page_token,
        })
    }
}

/// Reads the given users, locking their rows (PostgreSQL; SQLite's write transaction already
/// excludes other writers) in id order so that concurrent batches cannot deadlock.
pub(crate) async fn lock_users(
    txn: &sea_orm::DatabaseTransaction,
    ids: impl Iterator<Item = String>,
) -> Result<HashMap<String, user::Model>> {
    Ok(lock_user_rows(txn, ids)
        .await?
        .into_iter()
        .map(|(id, row)| (id, row.model))
        .collect())
}

/// `lock_users`, with what each user owns (see `UserRow`).
pub(crate) async fn lock_user_rows(
    txn: &sea_orm::DatabaseTransaction,
    ids: impl Iterator<Item = String>,
) -> Result<HashMap<String, UserRow>> {
    let rows = fetch_rows(
        txn,
        user::Entity::find()
            .filter(Column::Id.is_in(ids))
            .order_by_asc(Column::Id)
            .lock_exclusive(),
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.model.id.clone(), r)).collect())
}

/// A user's row, and whether the user has devices or blocks of its own: loading those costs a
/// query each, which most users (who have none) can skip.
pub(crate) struct UserRow {
    pub model: user::Model,
    pub owns: Owns,
}

/// Which rows of its own a user has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owns {
    devices: bool,
    blocks: bool,
}

impl Owns {
    pub const fn new(devices: bool, blocks: bool) -> Owns {
        Owns { devices, blocks }
    }

    /// Unknown: look for both.
    pub const ANY: Owns = Owns {
        devices: true,
        blocks: true,
    };
    /// A user created just now.
    pub const NOTHING: Owns = Owns {
        devices: false,
        blocks: false,
    };
}

/// Whether each user has devices and blocks (`owns_devices`, `owns_blocks`: 1 or 0, an integer
/// on both databases), as extra columns of a select of `users`.
pub(crate) const OWNS_COLUMNS: &str = "\
    CASE WHEN EXISTS (SELECT 1 FROM devices WHERE devices.user_id = users.id) \
    THEN 1 ELSE 0 END AS owns_devices, \
    CASE WHEN EXISTS (SELECT 1 FROM user_blocks WHERE user_blocks.user_id = users.id) \
    THEN 1 ELSE 0 END AS owns_blocks";

/// Runs a select of users, reading with each row whether the user owns devices or blocks.
pub(crate) async fn fetch_rows(
    conn: &impl ConnectionTrait,
    select: sea_orm::Select<user::Entity>,
) -> Result<Vec<UserRow>> {
    use sea_orm::{QueryTrait, sea_query::Expr};
    let statement = select
        .expr(Expr::cust(OWNS_COLUMNS))
        .build(conn.get_database_backend());
    rows_of(conn, statement).await
}

/// Ids `users_by_id` pads its lists up to; longer lists go as they are.
pub(crate) const USERS_BY_ID_PADDED: usize = 100;

/// The users with these ids, deleted or not, with their devices and blocks. One id is sent as
/// GetUser's own statement, whose SQL is built once. More are sent as `id IN (...)` with the
/// list padded (repeating an id) to a power of two, or to `USERS_BY_ID_PADDED`: each connection
/// then prepares a handful of statements instead of one per length.
pub(crate) async fn users_by_id(
    conn: &impl ConnectionTrait,
    mut ids: Vec<String>,
) -> Result<Vec<User>> {
    let rows = match ids.as_slice() {
        [] => return Ok(Vec::new()),
        [id] => rows_of(conn, select_user_by_id(id, conn.get_database_backend())).await?,
        [first, ..] => {
            let padded = ids
                .len()
                .next_power_of_two()
                .min(USERS_BY_ID_PADDED)
                .max(ids.len());
            let first = first.clone();
            ids.resize(padded, first);
            fetch_rows(conn, user::Entity::find().filter(Column::Id.is_in(ids))).await?
        }
    };
    load_users(conn, rows).await
}

/// Writes back users whose rows exist and are locked (`before[i]` is `users[i]`'s row as read):
/// one `UPDATE ... FROM (VALUES ...)` for the batch, setting only those of `columns` that changed
/// for some user of it. A partial update usually changes one document and `updated_at`; the
/// others stay unsent, unencoded and unparsed.
async fn update_changed(
    txn: &impl ConnectionTrait,
    before: &[user::Model],
    users: &mut [User],
    owns: &[Owns],
    columns: &[Column],
) -> Result<()> {
    use sea_orm::ModelTrait;
    let after: Vec<user::Model> = users.iter().map(user::Model::from).collect();
    let changed: Vec<Column> = columns
        .iter()
        .copied()
        .filter(|&c| before.iter().zip(&after).any(|(b, a)| b.get(c) != a.get(c)))
        .collect();
    if !changed.is_empty() {
        txn.execute_raw(update_sql(txn.get_database_backend(), &after, &changed))
            .await?;
    }
    attach_owned(txn, users, owns).await
}

/// `UPDATE users SET c = v.column2, ... FROM (VALUES (id, c, ...), ...) AS v WHERE users.id =
/// v.column1`: the same text on both databases (VALUES names its columns `column1`, `column2`,
/// ... on each), with PostgreSQL's parameters typed by a cast, which VALUES needs there.
fn update_sql(
    backend: sea_orm::DatabaseBackend,
    rows: &[user::Model],
    columns: &[Column],
) -> sea_orm::Statement {
    use sea_orm::{IdenStatic, ModelTrait, Value};
    let postgres = backend == sea_orm::DatabaseBackend::Postgres;
    let set: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\"{}\" = v.column{}", c.as_str(), i + 2))
        .collect();
    let mut sql = format!("UPDATE users SET {} FROM (VALUES ", set.join(", "));
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * (columns.len() + 1));
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        let id = (Value::from(row.id.clone()), "::text");
        let changed = columns.iter().map(|&c| {
            let value = row.get(c);
            let cast = match value {
                Value::Json(_) => "::jsonb",
                Value::BigInt(_) => "::int8",
                Value::Int(_) => "::int4",
                Value::Bool(_) => "::bool",
                Value::Double(_) => "::float8",
                Value::String(_) => "::text",
                _ => "",
            };
            (value, cast)
        });
        push_row(
            &mut sql,
            &mut values,
            postgres,
            std::iter::once(id).chain(changed),
        );
    }
    sql.push_str(") AS v WHERE users.id = v.column1");
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// The statement GetUser sends: one user by id, and whether it has devices and blocks of its
/// own (public so that the benchmark's floor sends the very same SQL).
/// Its SQL is built once per database kind: building it with the query builder took about a
/// sixth of roster's own instructions per GetUser (callgrind).
pub fn select_user_by_id(id: &str, backend: sea_orm::DatabaseBackend) -> sea_orm::Statement {
    use sea_orm::DatabaseBackend;
    use std::sync::OnceLock;
    fn build(id: &str, backend: DatabaseBackend) -> sea_orm::Statement {
        use sea_orm::{QueryTrait, sea_query::Expr};
        user::Entity::find()
            .filter(Column::Id.eq(id.to_owned()))
            .expr(Expr::cust(OWNS_COLUMNS))
            .build(backend)
    }
    static POSTGRES: OnceLock<String> = OnceLock::new();
    static SQLITE: OnceLock<String> = OnceLock::new();
    let sql = match backend {
        DatabaseBackend::Postgres => &POSTGRES,
        DatabaseBackend::Sqlite => &SQLITE,
        _ => return build(id, backend),
    }
    .get_or_init(|| build("", backend).sql);
    sea_orm::Statement::from_sql_and_values(backend, sql.clone(), [id.into()])
}

/// The `users` columns in the entity's order, as SeaORM's selects list them; `QueryUsers` lists
/// them so too (not `users.*`, whose order is the table's), so that `rows_of` reads by position.
pub(crate) fn user_columns() -> &'static str {
    use sea_orm::{Iden, Iterable};
    static COLUMNS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    COLUMNS.get_or_init(|| {
        Column::iter()
            .map(|c| format!("\"users\".\"{}\"", c.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Runs a statement that selects `user_columns()` and then `OWNS_COLUMNS`.
pub(crate) async fn rows_of(
    conn: &impl ConnectionTrait,
    statement: sea_orm::Statement,
) -> Result<Vec<UserRow>> {
    let rows = conn.query_all_raw(statement).await?;
    Ok(rows.iter().map(user_row).collect::<Result<_, DbErr>>()?)
}

/// One row of a user select, read by position: reading by name made SeaORM format each column's
/// name for every row read, about a sixth of roster's instructions per GetUser (callgrind).
fn user_row(row: &sea_orm::QueryResult) -> Result<UserRow, DbErr> {
    Ok(UserRow {
        model: user::Model {
            id: row.try_get_by_index(0)?,
            name: row.try_get_by_index(1)?,
            image: row.try_get_by_index(2)?,
            role: row.try_get_by_index(3)?,
            custom: row.try_get_by_index(4)?,
            language: row.try_get_by_index(5)?,
            invisible: row.try_get_by_index(6)?,
            teams: row.try_get_by_index(7)?,
            teams_role: row.try_get_by_index(8)?,
            privacy_settings: row.try_get_by_index(9)?,
            push_notifications: row.try_get_by_index(10)?,
            created_at: row.try_get_by_index(11)?,
            updated_at: row.try_get_by_index(12)?,
            deactivated_at: row.try_get_by_index(13)?,
            deleted_at: row.try_get_by_index(14)?,
            last_active: row.try_get_by_index(15)?,
            revoke_tokens_issued_before: row.try_get_by_index(16)?,
            avg_response_time: row.try_get_by_index(17)?,
            pruned_at: row.try_get_by_index(18)?,
            banned_at: row.try_get_by_index(19)?,
            ban_expires: row.try_get_by_index(20)?,
            ban_reason: row.try_get_by_index(21)?,
            shadow_banned: row.try_get_by_index(22)?,
            banned_by_id: row.try_get_by_index(23)?,
        },
        owns: Owns {
            devices: row.try_get_by_index::<i32>(24)? != 0,
            blocks: row.try_get_by_index::<i32>(25)? != 0,
        },
    })
}

/// The users of `rows`, with their devices and blocks.
pub(crate) async fn load_users(
    conn: &impl ConnectionTrait,
    rows: Vec<UserRow>,
) -> Result<Vec<User>> {
    let owns: Vec<Owns> = rows.iter().map(|r| r.owns).collect();
    let mut users: Vec<User> = rows.into_iter().map(|r| User::from(r.model)).collect();
    attach_owned(conn, &mut users, &owns).await?;
    Ok(users)
}

/// Locks one user for a write that needs it to exist and not be deleted.
pub(crate) async fn lock_live_user(txn: &sea_orm::DatabaseTransaction, id: &str) -> Result<User> {
    let row = lock_users(txn, std::iter::once(id.to_owned()))
        .await?
        .remove(id)
        .ok_or_else(|| Error::UserNotFound(id.to_owned()))?;
    if row.deleted_at.is_some() {
        return Err(Error::UserDeleted(row.id));
    }
    let mut users = [User::from(row)];
    attach_relations(txn, &mut users).await?;
    let [user] = users;
    Ok(user)
}

/// Loads the devices and blocks of `users` into them: one query for each, whatever the number of
/// users. Devices oldest first, blocks oldest first.
pub(crate) async fn attach_relations(
    conn: &impl ConnectionTrait,
    users: &mut [User],
) -> Result<()> {
    let owns = vec![Owns::ANY; users.len()];
    attach_owned(conn, users, &owns).await
}

/// `attach_relations`, looking only for the rows `owns` says a user has (`owns[i]` is about
/// `users[i]`); a query nobody needs is not sent.
pub(crate) async fn attach_owned(
    conn: &impl ConnectionTrait,
    users: &mut [User],
    owns: &[Owns],
) -> Result<()> {
    let ids = |pick: fn(&Owns) -> bool| -> Vec<String> {
        users
            .iter()
            .zip(owns)
            .filter(|(_, o)| pick(o))
            .map(|(u, _)| u.fields.id.clone())
            .collect()
    };
    let (with_devices, with_blocks) = (ids(|o| o.devices), ids(|o| o.blocks));
    let devices = if with_devices.is_empty() {
        Vec::new()
    } else {
        device::Entity::find()
            .filter(device::Column::UserId.is_in(with_devices))
            .order_by_asc(device::Column::CreatedAt)
            .order_by_asc(device::Column::Id)
            .all(conn)
            .await?
    };
    let blocks = if with_blocks.is_empty() {
        Vec::new()
    } else {
        user_block::Entity::find()
            .filter(user_block::Column::UserId.is_in(with_blocks))
            .order_by_asc(user_block::Column::CreatedAt)
            .order_by_asc(user_block::Column::BlockedUserId)
            .all(conn)
            .await?
    };
    let mut devices_of: HashMap<String, Vec<_>> = HashMap::new();
    for row in devices {
        devices_of
            .entry(row.user_id.clone())
            .or_default()
            .push(row.into_device());
    }
    let mut blocks_of: HashMap<String, Vec<String>> = HashMap::new();
    for row in blocks {
        blocks_of
            .entry(row.user_id)
            .or_default()
            .push(row.blocked_user_id);
    }
    for user in users {
        user.devices = devices_of.remove(&user.fields.id).unwrap_or_default();
        user.blocked_user_ids = blocks_of.remove(&user.fields.id).unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::{DatabaseBackend, Iterable};

    use super::*;

    /// A partial update's write names only the changed columns, each typed for PostgreSQL, and
    /// one VALUES row per user.
    #[test]
    fn updates_set_only_the_columns_given() {
        let rows: Vec<user::Model> = ["a", "b"]
            .iter()
            .map(|id| user::Model::from(&User::new(UserFields::with_id(*id), 7)))
            .collect();
        let columns = [Column::Custom, Column::UpdatedAt];
        let pg = update_sql(DatabaseBackend::Postgres, &rows, &columns);
        assert_eq!(
            pg.sql,
            "UPDATE users SET \"custom\" = v.column2, \"updated_at\" = v.column3 FROM (VALUES \
             ($1::text, $2::jsonb, $3::int8), ($4::text, $5::jsonb, $6::int8)) AS v \
             WHERE users.id = v.column1"
        );
        assert_eq!(pg.values.map_or(0, |v| v.0.len()), 6);
        let sqlite = update_sql(DatabaseBackend::Sqlite, &rows, &columns);
        assert!(
            sqlite
                .sql
                .contains("FROM (VALUES (?, ?, ?), (?, ?, ?)) AS v"),
            "{}",
            sqlite.sql
        );
    }

    /// `user_row` reads by position: every user select must list the entity's columns in order,
    /// then `OWNS_COLUMNS`, and `user_row` must know every column.
    #[test]
    fn user_selects_list_the_columns_user_row_reads() {
        assert_eq!(
            Column::iter().count(),
            24,
            "a column was added or removed: update user_row's positions"
        );
        let columns = format!("SELECT {}, {}", user_columns(), OWNS_COLUMNS);
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let by_id = select_user_by_id("u1", backend).sql;
            assert!(by_id.starts_with(&columns), "{backend:?}: {by_id}");
            let query = crate::domain::query::parse_query(None, &[], 10, 0, "", false)
                .expect("an empty query");
            let as_of = crate::domain::presence::AsOf {
                at: 0,
                presence: crate::domain::presence::Presence::default(),
            };
            let listed = super::super::query_sql::select_users(&query, backend, as_of)
                .expect("QueryUsers SQL")
                .sql;
            assert!(listed.starts_with(&columns), "{backend:?}: {listed}");
        }
    }
}
