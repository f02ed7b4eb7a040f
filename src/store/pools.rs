//! The connection pools, and how each kind of statement is planned on PostgreSQL.
//!
//! Most statements run on the main pool, whose sessions plan each execution of a prepared
//! statement for its own values (`plan_cache_mode = force_custom_plan`). PostgreSQL would
//! otherwise settle on a generic plan after five executions and keep it until the table's
//! statistics are refreshed: a plan made while `users` was nearly empty (a sequential scan for
//! `id IN (...)`) then stays while an import grows the table, and each batch gets slower than the
//! last. QueryUsers needs a plan for its values above all: which index serves a filter, and how
//! far an index scan in sort order runs before it has a page, depend on them.
//!
//! Planning each execution costs PostgreSQL tens of microseconds per statement, which was half of
//! what a GetUser cost it and about 0.2 ms of each UpdateUsersPartial. So, on PostgreSQL with a
//! pool of `SPLIT_FROM` connections or more, two kinds of work have connections of their own
//! with `GENERIC_PLAN_SETTINGS`, planned once per statement and connection:
//! - GetUser's point reads: one connection (they send one statement at a time, see `reads`);
//! - write transactions (`Store::write`): half the pool.
//!
//! Their statements find rows by primary key or by the `user_id` of devices and blocks, so
//! their best plan does not depend on the values, and with sequential scans priced out it uses
//! those indexes however small the table was when it was made. The three pools together hold at
//! most `max_connections`.
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DbErr};

use super::PoolStatus;

/// How long a pooled connection may sit unused before it is pinged on its next checkout.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(5);

/// Pools from this size up are split as the module says; smaller ones keep every connection for
/// everything (and plan every execution).
pub(crate) const SPLIT_FROM: u32 = 8;

/// Session settings of the point reads' and the writers' connections, on PostgreSQL:
/// - `plan_cache_mode = force_generic_plan`: each statement is planned once per connection and
///   the plan reused, as any client of prepared statements gets by default.
/// - `enable_seqscan = off`: the plan, made once, may have been made while a table was nearly
///   empty, where a sequential scan looks cheapest; with sequential scans priced out it uses an
///   index wherever one serves, so it holds as the table grows.
/// - `jit = off`: a plan that must scan a table whole (a sequence read by the feed stamp, a
///   role's users) carries the price of a disabled scan, far above `jit_above_cost`; compiling
///   it took 20 ms of each stamp.
pub(crate) const GENERIC_PLAN_SETTINGS: [(&str, &str); 3] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("jit", "off"),
];

/// PostgreSQL connection settings beyond the URL.
///
/// `statement_cache` 0 is the shape a pooler in transaction mode (PgBouncer before 1.21) can
/// carry, where each transaction may run on another server connection:
/// - No named prepared statement: every statement is parsed as the unnamed one (a named one would
///   be missing, or already exist, on the next server connection).
/// - Only the startup parameters PgBouncer tracks itself. It refuses the others (`unsupported
///   startup parameter`) unless its `ignore_startup_parameters` lists them, and then drops them:
///   - `extra_float_digits` (sqlx sends 2) is left out; it only shapes floats in text form, and
///     roster reads results in binary form.
///   - `options` (the plan settings) is left out too, and not needed: an unnamed statement is
///     parsed again for each execution and so always planned for its own values.
pub(crate) fn postgres_options(
    options: sea_orm::sqlx::postgres::PgConnectOptions,
    statement_cache: usize,
    plans: Plans,
) -> sea_orm::sqlx::postgres::PgConnectOptions {
    let options = options.statement_cache_capacity(statement_cache);
    if statement_cache == 0 {
        return options.extra_float_digits(None);
    }
    match plans {
        Plans::Custom => options.options([("plan_cache_mode", "force_custom_plan")]),
        Plans::Generic => options.options(GENERIC_PLAN_SETTINGS),
        Plans::Default => options,
    }
}

/// How a pool's sessions plan prepared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plans {
    /// For each execution's values (the main pool).
    Custom,
    /// Once, with `GENERIC_PLAN_SETTINGS` (point reads and writers).
    Generic,
    /// PostgreSQL's own default (migrations and probes, which run a statement once).
    Default,
}

/// The store's pools. Without a split, `writes` and `point` are the main pool again.
#[derive(Clone)]
pub(crate) struct Pools {
    pub main: DatabaseConnection,
    pub writes: DatabaseConnection,
    pub point: DatabaseConnection,
    split: bool,
}

/// Connections of each pool: main, writes, point reads.
pub(crate) fn sizes(max_connections: u32, split: bool) -> (u32, u32, u32) {
    let max = max_connections.max(1);
    if !split {
        return (max, max, max);
    }
    let writes = max / 2;
    (max - writes - 1, writes, 1)
}

impl Pools {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        statement_cache: usize,
    ) -> Result<Pools, DbErr> {
        let split = statement_cache > 0
            && max_connections >= SPLIT_FROM
            && (url.starts_with("postgres://") || url.starts_with("postgresql://"));
        let (main_size, writes_size, point_size) = sizes(max_connections, split);
        let pool = |size: u32, plans: Plans| {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(size)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(5))
                .acquire_timeout(acquire_timeout)
                // A connection in steady use is not pinged before each statement (that was a
                // second round trip per statement); one idle for a while may have been dropped
                // by the server or a proxy, and is checked first.
                .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
                .sqlx_logging(false)
                .map_sqlx_postgres_opts(move |o| postgres_options(o, statement_cache, plans))
                .map_sqlx_sqlite_opts(|o| {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                        .busy_timeout(Duration::from_secs(30))
                        .foreign_keys(true)
                });
            Database::connect(options)
        };
        let main = pool(main_size, Plans::Custom).await?;
        if !split {
            return Ok(Pools {
                writes: main.clone(),
                point: main.clone(),
                main,
                split,
            });
        }
        Ok(Pools {
            writes: pool(writes_size, Plans::Generic).await?,
            point: pool(point_size, Plans::Generic).await?,
            main,
            split,
        })
    }

    /// The distinct pools.
    fn each(&self) -> Vec<&DatabaseConnection> {
        if self.split {
            vec![&self.main, &self.writes, &self.point]
        } else {
            vec![&self.main]
        }
    }

    /// Connections of every pool: open, and checked out now.
    pub fn status(&self) -> PoolStatus {
        let mut total = PoolStatus { size: 0, in_use: 0 };
        for db in self.each() {
            let (size, idle) = match db.get_database_backend() {
                DatabaseBackend::Postgres => {
                    let pool = db.get_postgres_connection_pool();
                    (pool.size(), pool.num_idle())
                }
                _ => {
                    let pool = db.get_sqlite_connection_pool();
                    (pool.size(), pool.num_idle())
                }
            };
            let idle = u32::try_from(idle).unwrap_or(u32::MAX);
            total.size += size;
            total.in_use += size.saturating_sub(idle);
        }
        total
    }

    pub async fn close(self) {
        for db in self.each() {
            let _ = db.close_by_ref().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_pool_holds_no_more_connections_than_asked_for() {
        for max in SPLIT_FROM..=64 {
            let (main, writes, point) = sizes(max, true);
            assert_eq!(main + writes + point, max);
            assert!(
                main >= 3 && writes >= 4 && point == 1,
                "{max}: {main} {writes} {point}"
            );
        }
        assert_eq!(sizes(16, true), (7, 8, 1));
        assert_eq!(sizes(4, false), (4, 4, 4));
    }
}
