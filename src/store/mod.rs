//! The data layer: the only module that speaks SQL (through SeaORM). It exposes functions on
//! domain types; every write is one transaction.
mod conn;
mod devices;
pub mod entities;
mod errors;
pub(crate) mod events;
pub mod health;
mod lifecycle;
mod moderation;
mod pools;
pub mod query_sql;
mod reads;
mod replace;
mod roles;
mod sql_text;
mod task_queue;
mod task_rows;
#[cfg(test)]
pub(crate) mod testing;
mod tokens;
mod user_json;
mod user_reads;
mod user_rows;
mod users;

pub use events::FEED_WRITERS_LOCK;
pub use moderation::BanPage;
pub use task_queue::{Claim, Claimed, ItemCommit, PendingItem, TaskQueue};
pub use user_reads::UserPage;
pub use user_rows::{REPLACED_COLUMNS, select_user_by_id};

use std::{sync::Arc, time::Duration};

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::domain::presence::{AsOf, Presence};
use crate::domain::time::Clock;
use crate::domain::time::Micros;
use crate::error::Result;

/// Key of the PostgreSQL advisory lock that makes concurrent starts migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x726f_7374_6572; // "roster"

/// What the connection pool is doing.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub size: u32,
    pub in_use: u32,
}

#[derive(Clone)]
pub struct Store {
    /// The main pool (`pools.main`), for everything but what `pools` gives its own.
    db: DatabaseConnection,
    pools: pools::Pools,
    /// `db` for statements outside a write transaction (see `conn`).
    conn: conn::Conn,
    /// GetUser's point reads (see `pools`).
    point_conn: conn::Conn,
    /// SQLite has one writer at a time; queueing writers here, in process, is cheaper than letting
    /// them spin on SQLITE_BUSY. `None` on PostgreSQL, where row locks do the job. The slot keeps
    /// the last `now` a writer was given (read from the feed at the first write), so that no
    /// writer is given an earlier one, even if the system clock steps back.
    sqlite_writer: Option<Arc<Mutex<Option<Micros>>>>,
    /// Every instant the store writes or compares comes from here.
    clock: Clock,
    presence: Presence,
    /// GetUser's reads, coalesced under load (see `reads`).
    point_reads: Arc<reads::PointReads>,
    /// Whether the database is known to be down (see `health`).
    status: health::DbStatus,
}

/// A write transaction (plus, on SQLite, the writer slot it holds until commit or drop).
pub(crate) struct WriteTx {
    pub txn: DatabaseTransaction,
    slot: Option<OwnedMutexGuard<Option<Micros>>>,
    clock: Clock,
}

impl WriteTx {
    /// The time this transaction's writes are stamped with. Read it once the transaction holds
    /// what orders those writes, so that a later writer never stamps an earlier time:
    /// - on SQLite that is the writer slot, held from the start; the time is never before the
    ///   last writer's;
    /// - on PostgreSQL it is the rows the write changes, so read it after the locking reads.
    ///   Writers of different users are not ordered by their rows; the feed's order is kept by
    ///   `events::append`, which stamps events with the feed clock (see m0007).
    pub fn now(&mut self) -> Micros {
        let now = self.clock.now();
        match self.slot.as_deref_mut() {
            Some(last) => {
                let now = last.map_or(now, |last| Ord::max(last, now));
                *last = Some(now);
                now
            }
            None => now,
        }
    }

    pub async fn commit(self) -> Result<()> {
        self.txn.commit().await?;
        Ok(())
    }
}

/// How long, in milliseconds, a call waits for a pooled connection unless configured otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 2000;

/// Named prepared statements each PostgreSQL connection keeps (sqlx's own default).
pub const DEFAULT_STATEMENT_CACHE: usize = 100;

impl Store {
    /// Connects (creating an SQLite file if the URL says `mode=rwc`). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, DbErr> {
        Self::connect_with(
            url,
            max_connections,
            Duration::from_millis(DEFAULT_ACQUIRE_TIMEOUT_MS),
            DEFAULT_STATEMENT_CACHE,
        )
        .await
    }

    /// Like `connect`: a call waits at most `acquire_timeout` for a pooled connection, then
    /// answers UNAVAILABLE; each PostgreSQL connection keeps at most `statement_cache` named
    /// prepared statements (0: none, for a pooler in transaction mode).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        statement_cache: usize,
    ) -> Result<Store, DbErr> {
        let pools =
            pools::Pools::connect(url, max_connections, acquire_timeout, statement_cache).await?;
        let db = pools.main.clone();
        let backend = db.get_database_backend();
        let sqlite_writer =
            (backend == DatabaseBackend::Sqlite).then(|| Arc::new(Mutex::new(None)));
        // Without named statements roster is behind a pooler in transaction mode (or may be):
        // each lone statement then runs in a transaction of its own (see `conn`).
        let pinned = backend == DatabaseBackend::Postgres && statement_cache == 0;
        Ok(Store {
            conn: conn::Conn::new(db.clone(), pinned),
            point_conn: conn::Conn::new(pools.point.clone(), pinned),
            pools,
            db,
            sqlite_writer,
            clock: Clock::default(),
            presence: Presence::default(),
            point_reads: Arc::default(),
            status: health::DbStatus::default(),
        })
    }

    /// Reads time from `clock` (shared with whoever else holds it, such as a test).
    pub fn with_clock(mut self, clock: Clock) -> Store {
        self.clock = clock;
        self
    }

    pub fn with_presence(mut self, presence: Presence) -> Store {
        self.presence = presence;
        self
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    pub fn presence(&self) -> Presence {
        self.presence
    }

    /// How users read now look: bans and presence are judged at this instant.
    pub fn as_of_now(&self) -> AsOf {
        self.as_of(self.now())
    }

    pub fn as_of(&self, at: Micros) -> AsOf {
        AsOf {
            at,
            presence: self.presence,
        }
    }

    /// Applies pending migrations, once even when several processes start together: on
    /// PostgreSQL under an advisory lock held on one dedicated connection, on SQLite inside one
    /// exclusive transaction (SQLite's DDL is transactional). Fails if the database has
    /// migrations this binary does not know (a newer schema).
    pub async fn migrate(url: &str) -> Result<(), DbErr> {
        Self::migrate_with(url, DEFAULT_STATEMENT_CACHE).await
    }

    /// [`Store::migrate`] with `statement_cache` as in [`Store::connect_with`].
    pub async fn migrate_with(url: &str, statement_cache: usize) -> Result<(), DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false)
            .map_sqlx_postgres_opts(move |o| {
                pools::postgres_options(o, statement_cache, pools::Plans::Default)
            })
            // No journal-mode switch here: changing it needs the database to itself, which a
            // concurrent migrator's exclusive transaction would refuse. `connect` sets WAL.
            .map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::from_secs(30)));
        let db = Database::connect(options).await?;
        let outcome = match db.get_database_backend() {
            // Behind a pooler in transaction mode (no named statements), a session's advisory
            // lock could be taken on one server connection and released on another, where it
            // is not held. One transaction holds the lock (until it ends) and the migrations,
            // all or nothing (PostgreSQL's DDL is transactional).
            DatabaseBackend::Postgres if statement_cache == 0 => {
                let txn = db.begin().await?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT pg_advisory_xact_lock($1)",
                    [MIGRATION_LOCK_KEY.into()],
                ))
                .await?;
                match migrate_on(&txn).await {
                    Ok(()) => txn.commit().await,
                    Err(err) => Err(err),
                }
            }
            DatabaseBackend::Postgres => {
                let lock = |sql: &str| {
                    Statement::from_sql_and_values(
                        DatabaseBackend::Postgres,
                        sql,
                        [MIGRATION_LOCK_KEY.into()],
                    )
                };
                db.execute_raw(lock("SELECT pg_advisory_lock($1)")).await?;
                let outcome = migrate_on(&db).await;
                db.execute_raw(lock("SELECT pg_advisory_unlock($1)"))
                    .await?;
                outcome
            }
            _ => {
                let txn = db
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Exclusive),
                        ..Default::default()
                    })
                    .await?;
                match migrate_on(&txn).await {
                    Ok(()) => txn.commit().await,
                    Err(err) => Err(err),
                }
            }
        };
        db.close().await?;
        outcome
    }

    /// Succeeds when every migration this binary knows is applied (and none it does not know);
    /// a schema still behind is reported as a connection-level error so that callers retry.
    pub async fn check_schema(url: &str) -> Result<(), DbErr> {
        Self::check_schema_with(url, DEFAULT_STATEMENT_CACHE).await
    }

    /// [`Store::check_schema`] with `statement_cache` as in [`Store::connect_with`].
    pub async fn check_schema_with(url: &str, statement_cache: usize) -> Result<(), DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false)
            .map_sqlx_postgres_opts(move |o| {
                pools::postgres_options(o, statement_cache, pools::Plans::Default)
            });
        let db = Database::connect(options).await?;
        let pending =
            if statement_cache == 0 && db.get_database_backend() == DatabaseBackend::Postgres {
                // Behind a pooler in transaction mode, in a transaction (see `conn`).
                let txn = db.begin().await?;
                let pending = pending_migrations(&txn).await;
                let _ = txn.rollback().await;
                pending
            } else {
                pending_migrations(&db).await
            };
        db.close().await?;
        let pending = pending?;
        match pending {
            Ok(0) => Ok(()),
            Ok(pending) => Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
                "waiting for {pending} migration(s) to be applied by `roster migrate`"
            )))),
            // No migration table yet: nothing applied so far.
            Err(_) => Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(
                "waiting for `roster migrate` to create the schema".into(),
            ))),
        }
    }

    /// Whether a failure to migrate or check the schema means "the database cannot be reached
    /// (yet)", worth retrying, rather than a final answer such as a newer schema.
    pub fn is_unreachable(err: &DbErr) -> bool {
        matches!(err, DbErr::Conn(_) | DbErr::ConnectionAcquire(_))
    }

    /// The migration names this binary knows.
    pub fn known_migrations() -> Vec<String> {
        Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// Connections of the pools (see `pools`): open, and checked out right now.
    pub fn pool_status(&self) -> PoolStatus {
        self.pools.status()
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    pub async fn close(self) {
        self.pools.close().await;
    }

    /// For statements outside a write transaction.
    pub(crate) fn conn(&self) -> &conn::Conn {
        &self.conn
    }

    /// For GetUser's point reads (see `pools`).
    pub(crate) fn point_conn(&self) -> &conn::Conn {
        &self.point_conn
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (so a read-modify-write cannot be
    /// overtaken), the default isolation on PostgreSQL with row locks taken by the caller.
    pub(crate) async fn write(&self) -> Result<WriteTx> {
        let slot = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let options = TransactionOptions {
            sqlite_transaction_mode: slot.as_ref().map(|_| SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = self.pools.writes.begin_with_options(options).await?;
        let mut slot = slot;
        if let Some(last @ None) = slot.as_deref_mut() {
            *last = Some(events::newest_time(&txn).await?);
        }
        Ok(WriteTx {
            txn,
            slot,
            clock: self.clock.clone(),
        })
    }
}

/// The migrations not applied yet (`Ok(Err)` when there is no migration table at all), after
/// refusing a newer schema.
async fn pending_migrations<C>(db: &C) -> Result<Result<usize, DbErr>, DbErr>
where
    C: ConnectionTrait,
    for<'c> &'c C: sea_orm::IntoDatabaseExecutor<'c>,
{
    refuse_newer_schema(db).await?;
    Ok(Migrator::get_pending_migrations(db).await.map(|p| p.len()))
}

/// A binary must not run against a schema written by a newer roster: it would not know the
/// columns and rules the newer schema carries.
async fn migrate_on<C>(db: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    for<'c> &'c C: sea_orm::IntoDatabaseExecutor<'c>,
{
    refuse_newer_schema(db).await?;
    Migrator::up(db, None).await
}

async fn refuse_newer_schema(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    // Asked first, so that a fresh database fails no statement: a failed one would end a
    // surrounding transaction (the one a pooler in transaction mode needs, see `migrate_with`).
    let exists = match backend {
        DatabaseBackend::Postgres => {
            "SELECT 1 AS x WHERE to_regclass('seaql_migrations') IS NOT NULL"
        }
        _ => "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'seaql_migrations'",
    };
    if db
        .query_one_raw(Statement::from_string(backend, exists))
        .await?
        .is_none()
    {
        return Ok(());
    }
    let applied = match db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT version FROM seaql_migrations",
        ))
        .await
    {
        Ok(rows) => rows,
        // No migration table yet: a fresh database.
        Err(_) => return Ok(()),
    };
    let known = Store::known_migrations();
    for row in applied {
        let version: String = row.try_get("", "version")?;
        if !known.contains(&version) {
            return Err(DbErr::Custom(format!(
                "the database schema is newer than this roster binary: it has migration \
                 {version}, which this binary does not know; run a newer roster"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PostgreSQL server the integration suite uses, when it runs on PostgreSQL.
    fn test_postgres() -> Option<String> {
        match std::env::var("ROSTER_TEST_DB").as_deref() {
            Ok("postgres") | Ok("postgresql") => Some(
                std::env::var("ROSTER_TEST_PG_URL")
                    .ok()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            ),
            _ => None,
        }
    }

    /// GetUser's reads and the write transactions reuse one plan per statement (no planning per
    /// call), and those plans read by primary key even when made on an empty table, so they
    /// hold as the table grows. The main pool's sessions still plan each execution.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn point_reads_and_writes_reuse_plans_that_read_by_primary_key_however_small_the_table() {
        testing::on_every_store(|store, _clock| async move {
            if store.backend() != DatabaseBackend::Postgres {
                return; // SQLite has no plan cache to speak of
            }
            for _ in 0..8 {
                let missing = store.get_user("nobody", true).await;
                assert!(matches!(missing, Err(crate::error::Error::UserNotFound(_))));
            }
            // The point reads have one connection, so this runs on the one that read.
            let plans = store
                .point_conn()
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                     WHERE statement LIKE '%owns_devices%' \
                     AND statement NOT LIKE '%pg_prepared_statements%'",
                ))
                .await
                .expect("prepared statements")
                .expect("GetUser's statement is prepared on the point connection");
            let generic: i64 = plans.try_get_by_index(0).expect("generic_plans");
            let custom: i64 = plans.try_get_by_index(1).expect("custom_plans");
            assert_eq!((generic, custom), (8, 0), "one plan, reused by every read");

            // The coalesced read's shape and the writers' locking read, 100 ids, each planned
            // for the empty table on its own pool.
            use entities::user;
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait};
            let ids: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
            let by_ids = user::Entity::find()
                .filter(user::Column::Id.is_in(ids.clone()))
                .expr(sea_orm::sea_query::Expr::cust(user_rows::OWNS_COLUMNS));
            let read = by_ids.clone().build(DatabaseBackend::Postgres).sql;
            let lock = by_ids.lock_exclusive().build(DatabaseBackend::Postgres).sql;
            let args: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            let explain = |txn: DatabaseTransaction, sql: String| {
                let args = args.join(", ");
                async move {
                    txn.execute_unprepared(&format!("PREPARE by_ids AS {sql}"))
                        .await
                        .expect("prepare");
                    let mode = txn
                        .query_one_raw(Statement::from_string(
                            DatabaseBackend::Postgres,
                            "SHOW plan_cache_mode",
                        ))
                        .await
                        .expect("show")
                        .map(|row| row.try_get_by_index::<String>(0).expect("mode"));
                    let plan: Vec<String> = txn
                        .query_all_raw(Statement::from_string(
                            DatabaseBackend::Postgres,
                            format!("EXPLAIN EXECUTE by_ids({args})"),
                        ))
                        .await
                        .expect("explain")
                        .iter()
                        .map(|row| row.try_get_by_index::<String>(0).expect("plan line"))
                        .collect();
                    txn.rollback().await.expect("rollback");
                    (mode, plan.join("\n"))
                }
            };
            let point = store.point_conn().begin().await.expect("begin");
            let write = store.write().await.expect("write").txn;
            for (mode, plan) in [explain(point, read).await, explain(write, lock).await] {
                assert_eq!(mode.as_deref(), Some("force_generic_plan"));
                assert!(plan.contains("users_pkey"), "reads by primary key:\n{plan}");
                assert!(!plan.contains("Seq Scan"), "scans nothing whole:\n{plan}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn postgres_sessions_plan_each_execution_for_its_values() -> Result<(), DbErr> {
        let Some(url) = test_postgres() else {
            eprintln!("SKIPPED: plan caching is PostgreSQL's (ROSTER_TEST_DB=postgres)");
            return Ok(());
        };
        let store = Store::connect(&url, 2).await?;
        let row = store
            .db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SHOW plan_cache_mode",
            ))
            .await?;
        let mode: Option<String> = row.map(|r| r.try_get_by_index(0)).transpose()?;
        store.close().await;
        assert_eq!(mode.as_deref(), Some("force_custom_plan"));
        Ok(())
    }
}
