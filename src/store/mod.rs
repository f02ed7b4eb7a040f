//! The data layer: the only module that speaks SQL (through SeaORM). It exposes functions on
//! domain types; every write is one transaction.
pub mod entities;
pub mod query_sql;
mod roles;
mod tasks;
mod users;

pub use tasks::{Claimed, ItemCommit, NewTask, PendingItem};
pub use users::UserPage;

use std::{sync::Arc, time::Duration};

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::Result;

/// Key of the PostgreSQL advisory lock that makes concurrent starts migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x726f_7374_6572; // "roster"

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite has one writer at a time; queueing writers here, in process, is cheaper than letting
    /// them spin on SQLITE_BUSY. `None` on PostgreSQL, where row locks do the job.
    sqlite_writer: Option<Arc<Mutex<()>>>,
}

/// A write transaction (plus, on SQLite, the writer slot it holds until commit or drop).
pub(crate) struct WriteTx {
    pub txn: DatabaseTransaction,
    _slot: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        self.txn.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Connects (creating an SQLite file if the URL says `mode=rwc`). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections.max(1))
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await?;
        let sqlite_writer = (db.get_database_backend() == DatabaseBackend::Sqlite)
            .then(|| Arc::new(Mutex::new(())));
        Ok(Store { db, sqlite_writer })
    }

    /// Applies pending migrations. On PostgreSQL an advisory lock, held on one dedicated
    /// connection, makes replicas that start together migrate once. Fails if the database has
    /// migrations this binary does not know (a newer schema).
    pub async fn migrate(url: &str) -> Result<(), DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30))
            });
        let db = Database::connect(options).await?;
        let backend = db.get_database_backend();
        let lock =
            |sql: &str| Statement::from_sql_and_values(backend, sql, [MIGRATION_LOCK_KEY.into()]);
        if backend == DatabaseBackend::Postgres {
            db.execute_raw(lock("SELECT pg_advisory_lock($1)")).await?;
        }
        let outcome = Migrator::up(&db, None).await;
        if backend == DatabaseBackend::Postgres {
            db.execute_raw(lock("SELECT pg_advisory_unlock($1)"))
                .await?;
        }
        db.close().await?;
        outcome
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    pub async fn close(self) {
        let _ = self.db.close().await;
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
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
        let txn = self.db.begin_with_options(options).await?;
        Ok(WriteTx { txn, _slot: slot })
    }
}
