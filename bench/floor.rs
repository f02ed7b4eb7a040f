//! The floor: the same work as each scenario, sent straight to a fresh database of the same kind
//! through sqlx (prepared statements, cached per connection), at the same concurrency, with the
//! SQL roster sends for it. What roster adds on top (gRPC, validation, the rows it reads to
//! answer) is what the roster / floor ratio measures.
//!
//! - upsert: per batch of 100, one transaction: the multi-row `INSERT INTO users ... ON CONFLICT
//!   (id) DO UPDATE` of the columns a replace writes, and the multi-row insert of the batch's
//!   change-feed rows (the user as a JSON snapshot), as roster writes both.
//! - partial: per user, one transaction: read the custom document locking the row, write the
//!   merged document and `updated_at`, append the change-feed row.
//! - get: per read, the statement roster sends for a GetUser that no other read shares
//!   (`store::select_user_by_id`): the row by primary key, and whether the user has devices and
//!   blocks. Under load roster answers reads asked together with one `id IN (...)` statement;
//!   the floor does not, as one caller reading rows one at a time would not.
//! - query: the very statement roster builds for the query (`store::query_sql::select_users`).
//! - delete-task: one `UPDATE` that soft-deletes all the users at once (`deleted_at`,
//!   `updated_at`), the least any delete of them must do.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use roster::domain::time::Micros;
use roster::store::entities::user;
use sea_orm::sqlx::{
    self, ConnectOptions, PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    types::Json,
};
use sea_orm::{DatabaseBackend, IdenStatic, Iterable, Value};
use serde_json::json;
use tokio::sync::Mutex;

use crate::data::Population;
use crate::load::{Measured, closed_loop, histogram, record, scatter};
use crate::scenarios::{QUERY_LIMIT, QUERY_SORT, query_filter};

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    /// SQLite has one writer at a time: writers queue on the mutex, as in roster.
    Sqlite(SqlitePool, Arc<Mutex<()>>),
}

/// Runs `$body` with `$pool` bound to the concrete sqlx pool, for either database.
macro_rules! on_pool {
    ($floor:expr, |$pool:ident| $body:expr) => {
        match &$floor.pool {
            Pool::Postgres($pool) => $body,
            Pool::Sqlite($pool, _) => $body,
        }
    };
}

/// Binds one `users` row in the entity's column order (`user::Column::iter()`).
macro_rules! bind_user {
    ($q:expr, $row:expr) => {{
        let row: &user::Model = $row;
        $q.bind(row.id.clone())
            .bind(row.name.clone())
            .bind(row.image.clone())
            .bind(row.role.clone())
            .bind(Json(row.custom.clone()))
            .bind(row.language.clone())
            .bind(row.invisible)
            .bind(Json(row.teams.clone()))
            .bind(Json(row.teams_role.clone()))
            .bind(row.privacy_settings.clone().map(Json))
            .bind(row.push_notifications.clone().map(Json))
            .bind(row.created_at)
            .bind(row.updated_at)
            .bind(row.deactivated_at)
            .bind(row.deleted_at)
            .bind(row.last_active)
            .bind(row.revoke_tokens_issued_before)
            .bind(row.avg_response_time)
            .bind(row.pruned_at)
            .bind(row.banned_at)
            .bind(row.ban_expires)
            .bind(row.ban_reason.clone())
            .bind(row.shadow_banned)
            .bind(row.banned_by_id.clone())
    }};
}

/// Binds one change-feed row in `EVENT_COLUMNS` order: the user as roster snapshots it (the row,
/// its devices and blocks).
macro_rules! bind_event {
    ($q:expr, $row:expr, $kind:expr, $at:expr) => {{
        let row: &user::Model = $row;
        // Serialized by sqlx straight from the row, as roster writes it straight to text.
        let snapshot = EventSnapshot {
            row,
            devices: [],
            blocked_user_ids: [],
        };
        $q.bind($kind)
            .bind(row.id.clone())
            .bind("server")
            .bind(Option::<String>::None)
            .bind(Option::<String>::None)
            .bind($at)
            .bind(Json(snapshot))
            .bind(Option::<String>::None)
    }};
}

/// A change-feed snapshot as roster stores it: the row, and no devices or blocks.
#[derive(serde::Serialize)]
struct EventSnapshot<'a> {
    #[serde(flatten)]
    row: &'a user::Model,
    devices: [u8; 0],
    blocked_user_ids: [u8; 0],
}

/// Binds a value of roster's query statement.
macro_rules! bind_value {
    ($q:expr, $value:expr) => {
        match $value {
            Value::BigInt(v) => $q.bind(*v),
            Value::Int(v) => $q.bind(*v),
            Value::Double(v) => $q.bind(*v),
            Value::Bool(v) => $q.bind(*v),
            Value::String(v) => $q.bind(v.clone()),
            Value::Json(v) => $q.bind(v.as_deref().cloned().map(Json)),
            other => bail!("floor: roster's query binds a {other:?}, which the floor cannot"),
        }
    };
}

#[derive(Clone)]
pub struct Floor {
    pool: Pool,
    population: Population,
}

const EVENT_COLUMNS: [&str; 8] = [
    "kind",
    "user_id",
    "actor",
    "caller",
    "created_by_id",
    "at",
    "snapshot",
    "role",
];

impl Floor {
    /// Connects to a database that roster's migrations made, with `connections` connections.
    /// Like roster's pool, a connection in steady use is not pinged before each statement
    /// (sqlx's default), so neither side pays that extra round trip.
    pub async fn connect(
        url: &str,
        connections: usize,
        population: Population,
    ) -> anyhow::Result<Floor> {
        let size = u32::try_from(connections).unwrap_or(u32::MAX);
        let pool = if url.starts_with("sqlite:") {
            // As roster connects: WAL, synchronous FULL, foreign keys.
            let options: SqliteConnectOptions = url.parse()?;
            let options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                .disable_statement_logging();
            let pool = SqlitePoolOptions::new()
                .max_connections(size)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Pool::Sqlite(pool, Arc::new(Mutex::new(())))
        } else {
            let options = sqlx::postgres::PgConnectOptions::from_url(&url.parse()?)?
                .disable_statement_logging();
            let pool = PgPoolOptions::new()
                .max_connections(size)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Pool::Postgres(pool)
        };
        Ok(Floor { pool, population })
    }

    pub fn backend(&self) -> DatabaseBackend {
        match self.pool {
            Pool::Postgres(_) => DatabaseBackend::Postgres,
            Pool::Sqlite(..) => DatabaseBackend::Sqlite,
        }
    }

    /// The database's version, as it reports it.
    pub async fn version(&self) -> anyhow::Result<String> {
        let version: String = match &self.pool {
            Pool::Postgres(pool) => {
                let v: String = sqlx::query_scalar("SHOW server_version")
                    .fetch_one(pool)
                    .await?;
                format!("PostgreSQL {v}")
            }
            Pool::Sqlite(pool, _) => {
                let v: String = sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(pool)
                    .await?;
                format!("SQLite {v}")
            }
        };
        Ok(version)
    }

    pub async fn close(self) {
        on_pool!(self, |pool| pool.close().await);
    }

    /// Holds the single-writer slot on SQLite; nothing on PostgreSQL.
    async fn writer(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.pool {
            Pool::Sqlite(_, lock) => Some(lock.clone().lock_owned().await),
            Pool::Postgres(_) => None,
        }
    }

    /// Creates users `first..first + users`, 100 a transaction.
    pub async fn upsert(
        &self,
        first: u64,
        users: u64,
        concurrency: usize,
    ) -> anyhow::Result<Measured> {
        let users_sql: Arc<str> = upsert_sql(100, self.backend()).into();
        let events_sql: Arc<str> = events_sql(100, self.backend()).into();
        let floor = self.clone();
        closed_loop(concurrency, users / 100, move |i| {
            let floor = floor.clone();
            let users_sql = users_sql.clone();
            let events_sql = events_sql.clone();
            async move {
                let now = now_micros();
                let start = first + i * 100;
                let rows = (start..start + 100)
                    .map(|n| floor.population.row(n, now))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let _slot = floor.writer().await;
                on_pool!(floor, |pool| {
                    let mut tx = pool.begin().await?;
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(&*users_sql));
                    for row in &rows {
                        q = bind_user!(q, row);
                    }
                    q.execute(&mut *tx).await?;
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(&*events_sql));
                    for row in &rows {
                        q = bind_event!(q, row, "user.created", now);
                    }
                    q.execute(&mut *tx).await?;
                    tx.commit().await?;
                });
                Ok(())
            }
        })
        .await
    }

    pub async fn partial(
        &self,
        users: u64,
        updates: u64,
        concurrency: usize,
    ) -> anyhow::Result<Measured> {
        let lock = match self.pool {
            Pool::Postgres(_) => " FOR UPDATE",
            Pool::Sqlite(..) => "",
        };
        let select: Arc<str> = format!("SELECT custom FROM users WHERE id = $1{lock}").into();
        let events_sql: Arc<str> = events_sql(1, self.backend()).into();
        let floor = self.clone();
        closed_loop(concurrency, updates, move |i| {
            let floor = floor.clone();
            let select = select.clone();
            let events_sql = events_sql.clone();
            async move {
                let n = scatter(i, users);
                let id = floor.population.id(n);
                let _slot = floor.writer().await;
                let now = now_micros();
                on_pool!(floor, |pool| {
                    let mut tx = pool.begin().await?;
                    let custom: Option<Json<serde_json::Value>> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(&*select))
                            .bind(&id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(Json(mut custom)) = custom else {
                        bail!("floor: user {id} not found");
                    };
                    if let Some(map) = custom.as_object_mut() {
                        map.insert("score".into(), json!(i % 1000));
                    }
                    sqlx::query("UPDATE users SET custom = $1, updated_at = $2 WHERE id = $3")
                        .bind(Json(&custom))
                        .bind(now)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    // The snapshot is the user after the change, as roster's event has it.
                    let mut row = floor.population.row(n, now)?;
                    row.custom = custom;
                    let q = sqlx::query(sqlx::AssertSqlSafe(&*events_sql));
                    bind_event!(q, &row, "user.updated", now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                });
                Ok(())
            }
        })
        .await
    }

    pub async fn get(
        &self,
        users: u64,
        reads: u64,
        concurrency: usize,
    ) -> anyhow::Result<Measured> {
        let floor = self.clone();
        let select: Arc<str> = roster::store::select_user_by_id("", self.backend())
            .sql
            .into();
        closed_loop(concurrency, reads, move |i| {
            let (floor, select) = (floor.clone(), select.clone());
            async move {
                let id = floor.population.id(scatter(i, users));
                let found = on_pool!(floor, |pool| {
                    sqlx::query(sqlx::AssertSqlSafe(&*select))
                        .bind(&id)
                        .fetch_optional(pool)
                        .await?
                        .is_some()
                });
                if !found {
                    bail!("floor: user {id} not found");
                }
                Ok(())
            }
        })
        .await
    }

    /// roster's own statement for the query, with its values bound.
    pub async fn query(&self, queries: u64, concurrency: usize) -> anyhow::Result<Measured> {
        let filter = query_filter();
        let parsed = roster::domain::query::parse_query(
            Some(&filter),
            &[(QUERY_SORT.0.to_owned(), QUERY_SORT.1)],
            QUERY_LIMIT,
            0,
            "",
            false,
        )
        .map_err(|e| anyhow::anyhow!("parsing the query: {e}"))?;
        let as_of = roster::domain::presence::AsOf {
            at: roster::domain::time::now_micros(),
            presence: roster::domain::presence::Presence::default(),
        };
        let statement = roster::store::query_sql::select_users(&parsed, self.backend(), as_of)
            .map_err(|e| anyhow::anyhow!("building the query: {e}"))?;
        let sql: Arc<str> = statement.sql.into();
        let values: Arc<Vec<Value>> = Arc::new(statement.values.map(|v| v.0).unwrap_or_default());
        let floor = self.clone();
        closed_loop(concurrency, queries, move |_| {
            let floor = floor.clone();
            let sql = sql.clone();
            let values = values.clone();
            async move {
                let rows = on_pool!(floor, |pool| {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(&*sql));
                    for value in values.iter() {
                        q = bind_value!(q, value);
                    }
                    q.fetch_all(pool).await?.len()
                });
                if rows < QUERY_LIMIT as usize {
                    bail!("floor query returned {rows} rows, expected at least {QUERY_LIMIT}");
                }
                Ok(())
            }
        })
        .await
    }

    /// One bulk soft delete of users `first..first + users`; returns how long it took.
    pub async fn delete(&self, first: u64, users: u64) -> anyhow::Result<Duration> {
        let ids: Vec<String> = (first..first + users)
            .map(|n| self.population.id(n))
            .collect();
        let now = now_micros();
        let _slot = self.writer().await;
        let started = Instant::now();
        let deleted = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "UPDATE users SET deleted_at = $1, updated_at = $1 \
                     WHERE id = ANY($2) AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(&ids)
            .execute(pool)
            .await?
            .rows_affected(),
            Pool::Sqlite(pool, _) => sqlx::query(
                "UPDATE users SET deleted_at = $1, updated_at = $1 \
                     WHERE id IN (SELECT value FROM json_each($2)) AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(Json(&ids))
            .execute(pool)
            .await?
            .rows_affected(),
        };
        let elapsed = started.elapsed();
        if deleted != users {
            bail!("floor: the bulk delete marked {deleted} of {users} users");
        }
        Ok(elapsed)
    }
}

/// Placeholders for `rows` rows of `columns` columns: `($1, $2), ($3, $4)` on PostgreSQL, and
/// `(?, ?), (?, ?)` on SQLite as roster's statements have it there (sqlx resolves numbered SQLite
/// placeholders by name, one search per parameter: with the 2400 of a 100-user batch that was a
/// third of the floor's time).
fn values_list(rows: usize, columns: usize, backend: DatabaseBackend) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| match backend {
                    DatabaseBackend::Sqlite => "?".to_owned(),
                    _ => format!("${}", r * columns + c),
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn upsert_sql(rows: usize, backend: DatabaseBackend) -> String {
    // The entity's columns, in the order `bind_user!` binds them; what a replace writes is
    // roster's own list.
    let columns: Vec<&str> = user::Column::iter().map(|c| c.as_str()).collect();
    let set: Vec<String> = roster::store::REPLACED_COLUMNS
        .iter()
        .map(|c| format!("{0} = excluded.{0}", c.as_str()))
        .collect();
    format!(
        "INSERT INTO users ({}) VALUES {} ON CONFLICT (id) DO UPDATE SET {}",
        columns.join(", "),
        values_list(rows, columns.len(), backend),
        set.join(", ")
    )
}

fn events_sql(rows: usize, backend: DatabaseBackend) -> String {
    format!(
        "INSERT INTO user_events ({}) VALUES {}",
        EVENT_COLUMNS.join(", "),
        values_list(rows, EVENT_COLUMNS.len(), backend)
    )
}

fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A single operation timed like a closed-loop run of one request.
pub fn single(elapsed: Duration) -> Measured {
    let mut latency = histogram();
    record(&mut latency, elapsed);
    Measured {
        requests: 1,
        elapsed,
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_list_numbers_placeholders_row_by_row() {
        assert_eq!(
            values_list(2, 3, DatabaseBackend::Postgres),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(values_list(2, 2, DatabaseBackend::Sqlite), "(?, ?), (?, ?)");
    }

    #[test]
    fn upsert_updates_only_the_replaced_columns() {
        let sql = upsert_sql(1, DatabaseBackend::Postgres);
        assert!(sql.contains("ON CONFLICT (id) DO UPDATE SET name = excluded.name"));
        assert!(!sql.contains("created_at = excluded"));
        assert!(sql.contains("updated_at = excluded.updated_at"));
    }
}
