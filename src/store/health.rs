//! Whether the database answers. A probe on a connection of its own, outside the pool, asks it
//! every half second; while it does not answer, calls are refused at once with UNAVAILABLE instead
//! of each waiting out the pool's acquire timeout (and piling up behind one another). A pool busy
//! with slow calls is not a database that is down, so the probe never uses the pool.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use super::Store;
use crate::error::{Error, Result};

/// Shared by the store (which refuses calls while down) and the probe (which decides).
#[derive(Clone, Default)]
pub struct DbStatus {
    down: Arc<AtomicBool>,
}

impl DbStatus {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }
}

/// The database is known down: what a refused call carries as its cause.
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer roster's last health probe")]
struct KnownDown;

impl Store {
    /// Refuses at once while the database is known down; `Ok` otherwise (including while nothing
    /// probes it, as on SQLite).
    pub fn fail_fast(&self) -> Result<()> {
        if self.status.is_down() {
            return Err(Error::Unavailable(Arc::new(KnownDown)));
        }
        Ok(())
    }

    /// The status this store refuses calls by, for the probe that sets it.
    pub fn db_status(&self) -> DbStatus {
        self.status.clone()
    }
}

/// Asks the database whether it answers, on one connection of its own.
pub struct Probe {
    url: String,
    /// As the pool's (0 behind a pooler in transaction mode, which refuses some startup
    /// parameters): the probe must be able to connect wherever the pool can.
    statement_cache: usize,
    timeout: Duration,
    conn: Option<DatabaseConnection>,
    status: DbStatus,
}

impl Probe {
    /// A probe of the database at `url`, connecting as the pool does (`statement_cache`), that
    /// sets `status`; each ask gives up after `timeout`.
    pub fn new(url: &str, statement_cache: usize, timeout: Duration, status: DbStatus) -> Self {
        Probe {
            url: url.to_owned(),
            statement_cache,
            timeout,
            conn: None,
            status,
        }
    }

    /// Asks once; records and returns whether the database answered.
    pub async fn check(&mut self) -> bool {
        let answered = tokio::time::timeout(self.timeout, self.ping())
            .await
            .unwrap_or(false);
        if !answered {
            // A fresh connection next time: this one may be dead for good.
            self.conn = None;
        }
        self.status.set_down(!answered);
        answered
    }

    async fn ping(&mut self) -> bool {
        if self.conn.is_none() {
            let mut options = ConnectOptions::new(self.url.clone());
            options
                .max_connections(1)
                .min_connections(0)
                .connect_timeout(self.timeout)
                .acquire_timeout(self.timeout)
                .sqlx_logging(false);
            let statement_cache = self.statement_cache;
            options.map_sqlx_postgres_opts(move |o| {
                super::pools::postgres_options(o, statement_cache, super::pools::Plans::Default)
            });
            self.conn = Database::connect(options).await.ok();
        }
        match &self.conn {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        }
    }

    /// Closes the probe's connection.
    pub async fn close(self) {
        if let Some(conn) = self.conn {
            let _ = conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_refused_at_once_while_the_probe_finds_the_database_down() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display());
        let store = Store::connect(&url, 1).await.expect("connect");
        assert!(store.fail_fast().is_ok(), "up until a probe says otherwise");

        // A database that is not there: no server listens on port 9 of loopback.
        let mut probe = Probe::new(
            "postgres://nobody@127.0.0.1:9/none",
            0,
            Duration::from_millis(500),
            store.db_status(),
        );
        assert!(!probe.check().await, "nothing answers on port 9");
        assert!(matches!(store.fail_fast(), Err(Error::Unavailable(_))));

        let mut probe = Probe::new(&url, 100, Duration::from_secs(5), store.db_status());
        assert!(probe.check().await, "the SQLite file answers");
        assert!(
            store.fail_fast().is_ok(),
            "up again once the probe is answered"
        );
        probe.close().await;
    }
}
