//! The write of UpdateUsers: one multi-row `INSERT ... ON CONFLICT (id) DO UPDATE` that creates
//! new users and replaces the caller fields of existing ones, built by hand (SeaORM's builder
//! cloned every JSON document twice and built an expression tree per value).
//!
//! On PostgreSQL the statement also says, row by row, what it did (`RETURNING`): whether it
//! created the user (`xmax = 0`: no earlier version of the row), the server fields of the user it
//! replaced, and whether that user owns devices or blocks. So no locking read goes before it, and
//! two batches that create the same new id at once cannot both call it created: the second waits
//! on the first's row and replaces it. A deleted user is not replaced (`WHERE deleted_at IS
//! NULL`), so it is missing from what comes back. SQLite has one writer at a time, so there the
//! read before the write is exact, and the write returns nothing.
use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr, IdenStatic, Statement, Value};

use super::entities::user::Column;
use super::sql_text::SqlText;
use super::user_json::RowJson;
use super::user_rows::{OWNS_COLUMNS, Owns, REPLACED_COLUMNS};
use crate::domain::moderation::Ban;
use crate::domain::user::User;
use crate::error::Result;

/// The columns of the INSERT, in the order `insert_row` gives their values.
const INSERT_COLUMNS: [Column; 24] = [
    Column::Id,
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
    Column::CreatedAt,
    Column::UpdatedAt,
    Column::DeactivatedAt,
    Column::DeletedAt,
    Column::LastActive,
    Column::RevokeTokensIssuedBefore,
    Column::AvgResponseTime,
    Column::PrunedAt,
    Column::BannedAt,
    Column::BanExpires,
    Column::BanReason,
    Column::ShadowBanned,
    Column::BannedById,
];

/// What the write did to one user (PostgreSQL).
pub(crate) struct Replaced {
    pub created: bool,
    /// The user's server fields as stored (its own, kept, when it existed).
    pub server: ServerFields,
    pub owns: Owns,
}

/// The fields of a user that only roster writes.
pub(crate) struct ServerFields {
    pub created_at: i64,
    /// As stored: never before the time of the version it replaced.
    pub updated_at: i64,
    pub deactivated_at: Option<i64>,
    pub last_active: Option<i64>,
    pub revoke_tokens_issued_before: Option<i64>,
    pub avg_response_time: Option<i32>,
    pub pruned_at: Option<i64>,
    pub ban: Option<Ban>,
}

impl ServerFields {
    /// `user` with these server fields.
    pub fn apply(self, user: &mut User) {
        user.created_at = self.created_at;
        user.updated_at = self.updated_at;
        user.deactivated_at = self.deactivated_at;
        user.last_active = self.last_active;
        user.revoke_tokens_issued_before = self.revoke_tokens_issued_before;
        user.avg_response_time = self.avg_response_time;
        user.pruned_at = self.pruned_at;
        user.ban = self.ban;
    }
}

/// The columns `RETURNING` reads, in `read_replaced`'s order.
const RETURNED: &str = "users.id, users.created_at, users.deactivated_at, users.last_active, \
    users.revoke_tokens_issued_before, users.avg_response_time, users.pruned_at, \
    users.banned_at, users.ban_expires, users.ban_reason, users.shadow_banned, \
    users.banned_by_id, users.updated_at";

/// Writes `users` (each as if new: a user that exists keeps its server fields and takes only
/// the `REPLACED_COLUMNS`). On PostgreSQL, returns what happened to each user, by id; a deleted
/// user is left as it is and missing from the map. On SQLite, returns an empty map.
pub(crate) async fn write(
    conn: &impl ConnectionTrait,
    users: &[User],
) -> Result<HashMap<String, Replaced>> {
    let postgres = conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let statement = replace_sql(conn.get_database_backend(), users)?;
    if !postgres {
        conn.execute_raw(statement).await?;
        return Ok(HashMap::new());
    }
    let rows = conn.query_all_raw(statement).await?;
    rows.iter()
        .map(read_replaced)
        .collect::<Result<_, DbErr>>()
        .map_err(Into::into)
}

fn replace_sql(backend: sea_orm::DatabaseBackend, users: &[User]) -> Result<Statement> {
    let columns: Vec<&str> = INSERT_COLUMNS.iter().map(|c| c.as_str()).collect();
    let columns = columns.join(", ");
    let postgres = backend == sea_orm::DatabaseBackend::Postgres;
    let mut sql = if postgres {
        // The whole batch is one parameter: a JSON array of rows named like the columns. A
        // statement of 2400 parameters costs PostgreSQL more to plan (each execution gets its
        // own plan, see `store::connect`) than the JSON costs it to read: 1.9 ms of planning
        // per 100 users against 0.4 ms. Read as `jsonb`, which is parsed once; `json` is parsed
        // again for each row (0.8 ms against 0.3 ms for 100 rows of 400 bytes).
        let mut sql = SqlText::with_capacity(backend, 1024, 1);
        sql.push(&format!(
            "INSERT INTO users ({columns}) SELECT {columns} FROM jsonb_populate_recordset(NULL::users, "
        ));
        let rows: Vec<RowJson> = users.iter().map(RowJson::of).collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| crate::error::Error::Internal(format!("users as JSON: {e}")))?;
        sql.bind_cast(rows, "::jsonb");
        sql.push(")");
        sql
    } else {
        let mut sql = SqlText::with_capacity(backend, 1024, users.len() * INSERT_COLUMNS.len());
        sql.push(&format!("INSERT INTO users ({columns}) VALUES "));
        for (i, user) in users.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.row(insert_row(user).map(|value| (value, "")));
        }
        sql
    };
    // `now` was read before the row was locked (the statement locks it): a replace that waited
    // for a later writer of the same user keeps that writer's time rather than step back.
    let set: Vec<String> = REPLACED_COLUMNS
        .iter()
        .map(|c| match (c, postgres) {
            (Column::UpdatedAt, true) => {
                format!("{0} = GREATEST(users.{0}, excluded.{0})", c.as_str())
            }
            _ => format!("{0} = excluded.{0}", c.as_str()),
        })
        .collect();
    sql.push(" ON CONFLICT (id) DO UPDATE SET ");
    sql.push(&set.join(", "));
    if postgres {
        sql.push(" WHERE users.deleted_at IS NULL RETURNING ");
        sql.push(RETURNED);
        sql.push(", ");
        sql.push(OWNS_COLUMNS);
        sql.push(", users.xmax = 0 AS created");
    }
    Ok(sql.into_statement())
}

/// One user's values, in `INSERT_COLUMNS` order (SQLite's VALUES row; JSON documents go as
/// text, serialized straight from the user).
fn insert_row(user: &User) -> [Value; 24] {
    let f = &user.fields;
    let json =
        |text: serde_json::Result<String>| Value::from(text.unwrap_or_else(|_| "null".into()));
    let optional_json = |text: Option<serde_json::Result<String>>| {
        Value::from(text.map(|t| t.unwrap_or_else(|_| "null".into())))
    };
    let ban = user.ban.as_ref();
    [
        Value::from(f.id.clone()),
        Value::from(f.name.clone()),
        Value::from(f.image.clone()),
        Value::from(f.role.clone()),
        json(serde_json::to_string(&f.custom)),
        Value::from(f.language.clone()),
        Value::from(f.invisible),
        json(serde_json::to_string(&f.teams)),
        json(serde_json::to_string(&f.teams_role)),
        optional_json(f.privacy_settings.as_ref().map(serde_json::to_string)),
        optional_json(f.push_notifications.as_ref().map(serde_json::to_string)),
        Value::from(user.created_at),
        Value::from(user.updated_at),
        Value::from(user.deactivated_at),
        Value::from(user.deleted_at),
        Value::from(user.last_active),
        Value::from(user.revoke_tokens_issued_before),
        Value::from(user.avg_response_time),
        Value::from(user.pruned_at),
        Value::from(ban.map(|b| b.banned_at)),
        Value::from(ban.and_then(|b| b.expires)),
        Value::from(ban.and_then(|b| b.reason.clone())),
        Value::from(ban.is_some_and(|b| b.shadow)),
        Value::from(ban.and_then(|b| b.banned_by_id.clone())),
    ]
}

/// One row of `RETURNING`, read by position.
fn read_replaced(row: &sea_orm::QueryResult) -> Result<(String, Replaced), DbErr> {
    let banned_at: Option<i64> = row.try_get_by_index(7)?;
    let ban = match banned_at {
        Some(banned_at) => Some(Ban {
            banned_at,
            expires: row.try_get_by_index(8)?,
            reason: row.try_get_by_index(9)?,
            shadow: row.try_get_by_index(10)?,
            banned_by_id: row.try_get_by_index(11)?,
        }),
        None => None,
    };
    let id: String = row.try_get_by_index(0)?;
    let owns_devices: i32 = row.try_get_by_index(13)?;
    let owns_blocks: i32 = row.try_get_by_index(14)?;
    let created: bool = row.try_get_by_index(15)?;
    Ok((
        id,
        Replaced {
            created,
            server: ServerFields {
                created_at: row.try_get_by_index(1)?,
                updated_at: row.try_get_by_index(12)?,
                deactivated_at: row.try_get_by_index(2)?,
                last_active: row.try_get_by_index(3)?,
                revoke_tokens_issued_before: row.try_get_by_index(4)?,
                avg_response_time: row.try_get_by_index(5)?,
                pruned_at: row.try_get_by_index(6)?,
                ban,
            },
            owns: Owns::new(owns_devices != 0, owns_blocks != 0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use sea_orm::{DatabaseBackend, Iterable};

    use super::*;
    use crate::domain::user::UserFields;
    use crate::store::entities::user;

    #[test]
    fn the_insert_lists_every_column_of_users_once() {
        let mut listed: Vec<&str> = INSERT_COLUMNS.iter().map(|c| c.as_str()).collect();
        let mut entity: Vec<&str> = user::Column::iter().map(|c| c.as_str()).collect();
        listed.sort_unstable();
        entity.sort_unstable();
        assert_eq!(listed, entity);
    }

    /// A user `u1` of role `user`, created at 7.
    fn u1() -> User {
        User::new(
            UserFields {
                id: "u1".into(),
                role: "user".into(),
                ..UserFields::default()
            },
            7,
        )
    }

    #[test]
    fn postgres_gets_the_batch_as_one_json_parameter_and_returns_what_it_did() {
        let user = u1();
        let pg = replace_sql(DatabaseBackend::Postgres, &[user.clone(), user.clone()]).unwrap();
        assert!(
            pg.sql
                .contains("FROM jsonb_populate_recordset(NULL::users, $1::jsonb) ON CONFLICT"),
            "{}",
            pg.sql
        );
        assert!(
            pg.sql
                .ends_with("THEN 1 ELSE 0 END AS owns_blocks, users.xmax = 0 AS created"),
            "{}",
            pg.sql
        );
        let values = pg.values.unwrap().0;
        assert_eq!(values.len(), 1);
        let Value::String(Some(json)) = &values[0] else {
            panic!("{values:?}")
        };
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(json).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["id"], "u1");
        assert_eq!(rows[0]["created_at"], 7);
        assert_eq!(rows[0]["custom"], serde_json::json!({}));

        let sqlite = replace_sql(DatabaseBackend::Sqlite, &[user.clone(), user]).unwrap();
        assert!(sqlite.sql.contains("VALUES (?, ?, "), "{}", sqlite.sql);
        assert!(!sqlite.sql.contains("RETURNING"), "{}", sqlite.sql);
        assert!(!sqlite.sql.contains("::"), "{}", sqlite.sql);
        assert_eq!(sqlite.values.map(|v| v.0.len()), Some(48));
    }

    #[test]
    fn the_json_rows_name_every_inserted_column() {
        let user = u1();
        let row = serde_json::to_value(RowJson::of(&user)).unwrap();
        let serde_json::Value::Object(row) = row else {
            panic!("{row:?}")
        };
        // serde_json's map is sorted unless `preserve_order`; compare as sets and counts.
        let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
        let mut columns: Vec<&str> = INSERT_COLUMNS.iter().map(|c| c.as_str()).collect();
        keys.sort_unstable();
        columns.sort_unstable();
        assert_eq!(keys, columns);
    }
}
