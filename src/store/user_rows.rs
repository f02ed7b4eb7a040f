//! The shape of a user's row as roster reads and locks it: the columns a replace writes, reads
//! by id (one user, or a padded IN list), the locking reads writes start with, and the rows a
//! user owns (devices, blocks) loaded beside it. Writes live in `users` and `replace`.
use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::user::{self, Column};
use super::entities::{device, user_block};
use crate::domain::user::User;
use crate::error::{Error, Result};

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
