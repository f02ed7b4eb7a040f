//! Databases for tests: the `ROSTER_TEST_DB` choice, a fresh SQLite file or a fresh PostgreSQL
//! database per test (dropped when the test ends, pass or fail), a private PostgreSQL cluster a
//! test may stop and start, raw connections for what the API cannot construct, and the one way a
//! test says it cannot run here (`skip_unless_postgres`, `skip`).
//!
//! Backend: `ROSTER_TEST_DB` = `sqlite` (default), `postgres` or `pgbouncer`. For PostgreSQL the
//! admin URL comes from `ROSTER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test creates its own `roster_test_*` database and drops it when the test ends, pass or
//! fail.
//!
//! `pgbouncer`: the same, but roster connects through a pooler in transaction mode at
//! `ROSTER_TEST_PG_POOLER_URL` (e.g. `postgres://postgres@127.0.0.1:6432/postgres`; its database
//! part is replaced per test, so the pooler must map any database name to the server, PgBouncer's
//! `* = host=127.0.0.1 port=5432`). Databases are still created and dropped on the server
//! directly, and [`raw_db`] goes there too; roster runs with `--database-statement-cache 0`
//! (see [`statement_cache_for`]). `.ci/run` starts such a PgBouncer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL, with roster behind a pooler in transaction mode.
    PgBouncer,
}

pub fn backend() -> Backend {
    match std::env::var("ROSTER_TEST_DB").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        Ok("pgbouncer") => {
            assert!(
                pooler_url().is_some(),
                "ROSTER_TEST_DB=pgbouncer needs ROSTER_TEST_PG_POOLER_URL (a PgBouncer in \
                 transaction mode in front of ROSTER_TEST_PG_URL's server; `.ci/run` starts one)"
            );
            Backend::PgBouncer
        }
        Ok(other) => {
            panic!("ROSTER_TEST_DB must be `sqlite`, `postgres` or `pgbouncer`, not {other:?}")
        }
    }
}

/// True when the integration suite runs against PostgreSQL (directly or through the pooler).
pub fn on_postgres() -> bool {
    matches!(backend(), Backend::Postgres | Backend::PgBouncer)
}

/// `ROSTER_TEST_PG_POOLER_URL`: a pooler in transaction mode in front of the PostgreSQL server.
pub fn pooler_url() -> Option<String> {
    std::env::var("ROSTER_TEST_PG_POOLER_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

fn pg_admin_url() -> String {
    std::env::var("ROSTER_TEST_PG_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_PG_ADMIN_URL.to_owned())
}

/// `scheme://user@host:port` of a URL: what tells the pooler's URLs from the server's.
fn authority(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    &url[..end]
}

/// Whether roster reaches `url` through the pooler.
pub fn is_pooled_url(url: &str) -> bool {
    pooler_url().is_some_and(|pooler| authority(&pooler) == authority(url))
}

/// The `--database-statement-cache` roster needs for `url`: 0 through the pooler (no named
/// prepared statements), roster's default otherwise.
pub fn statement_cache_for(url: &str) -> usize {
    if is_pooled_url(url) {
        0
    } else {
        roster::store::DEFAULT_STATEMENT_CACHE
    }
}

/// The same database on the server itself, for a URL through the pooler (others unchanged).
pub fn direct_url(url: &str) -> String {
    if !is_pooled_url(url) {
        return url.to_owned();
    }
    let base = url.split('?').next().unwrap_or(url);
    let name = base[authority(base).len()..].trim_start_matches('/');
    with_database(&pg_admin_url(), name)
}

// ---------------------------------------------------------------------------------------------
// Skipping, loudly

/// Says loudly on stderr that `test` did not run, and why. Every test that returns early without
/// checking anything goes through here, so that a skip is never mistaken for a pass.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    // Straight to the process's stderr, not through `eprintln!`: the test harness captures what
    // a passing test prints with the macros, and a skip must show in every run.
    let line = format!("\n!!! SKIPPED {test}: {reason} !!!\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// For PostgreSQL-only tests: `true` (after saying so, loudly) when the suite runs on SQLite and
/// the test must return at once.
///
/// ```ignore
/// if skip_unless_postgres("my_test", "needs two writers") { return; }
/// ```
pub fn skip_unless_postgres(test: &str, why: &str) -> bool {
    if on_postgres() {
        return false;
    }
    skip(test, &format!("{why} (runs with ROSTER_TEST_DB=postgres)"));
    true
}

// ---------------------------------------------------------------------------------------------
// A fresh database per test

/// A database no other test uses. Dropping the last handle removes it.
pub struct TestDb {
    url: String,
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = self {
            drop_pg_database(admin_url.clone(), name.clone());
        }
    }
}

impl TestDb {
    pub async fn create() -> Self {
        match backend() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a tempdir for the SQLite file");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("roster.db").display()
                );
                TestDb {
                    url,
                    _cleanup: Cleanup::Sqlite(dir),
                }
            }
            Backend::Postgres => Self::create_postgres(None).await,
            Backend::PgBouncer => Self::create_postgres(pooler_url()).await,
        }
    }

    /// A fresh PostgreSQL database that roster reaches through the pooler, whatever
    /// `ROSTER_TEST_DB` says; `None` without `ROSTER_TEST_PG_POOLER_URL`.
    pub async fn create_pooled() -> Option<Self> {
        Some(Self::create_postgres(Some(pooler_url()?)).await)
    }

    /// Created on the server (admin URL); roster's URL goes through `pooler` when given.
    async fn create_postgres(pooler: Option<String>) -> Self {
        let admin_url = pg_admin_url();
        let name = unique_database_name();
        admin_execute(&admin_url, &format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} via {admin_url}: {e}"));
        let url = with_database(pooler.as_deref().unwrap_or(&admin_url), &name);
        TestDb {
            url,
            _cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// What still holds this database open, as an operator would look: on PostgreSQL the
    /// sessions `pg_stat_activity` lists for it; on SQLite its write-ahead log, which SQLite folds
    /// back and removes when the last connection closes. `None` when nothing does.
    pub async fn held_open(&self) -> Option<String> {
        match &self._cleanup {
            Cleanup::Sqlite(_) => {
                let path = self
                    .url
                    .strip_prefix("sqlite://")
                    .and_then(|rest| rest.split('?').next())
                    .expect("a sqlite:// URL");
                let wal = format!("{path}-wal");
                std::path::Path::new(&wal)
                    .exists()
                    .then(|| format!("{wal} exists"))
            }
            Cleanup::Postgres { admin_url, name } => {
                // A session whose client closed its socket ends a moment later (its backend
                // process exits on its own time, slower on a busy machine); one the client
                // keeps open stays. So the count must reach zero within a bound, not at once.
                let mut options = ConnectOptions::new(admin_url.clone());
                options.max_connections(1).sqlx_logging(false);
                let conn = Database::connect(options)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                let n = loop {
                    let row = conn
                        .query_one_raw(sea_orm::Statement::from_sql_and_values(
                            sea_orm::DatabaseBackend::Postgres,
                            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1",
                            [name.clone().into()],
                        ))
                        .await
                        .expect("read pg_stat_activity")
                        .expect("count(*) gives a row");
                    let n: i64 = row.try_get("", "n").expect("count column");
                    if n == 0 || std::time::Instant::now() >= deadline {
                        break n;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                };
                let _ = conn.close().await;
                (n > 0).then(|| format!("{n} sessions on {name}"))
            }
        }
    }
}

/// `roster_test_<pid>_<counter>_<time>`: unique within this run and across runs.
fn unique_database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("roster_test_{}_{n}_{nanos}", std::process::id())
}

/// The admin URL with its database path replaced by `name` (query string kept).
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

async fn admin_execute(admin_url: &str, sql: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(admin_url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    let conn = Database::connect(options).await?;
    let result = conn.execute_unprepared(sql).await.map(|_| ());
    // Best effort: the connection goes away with the pool either way.
    let _ = conn.close().await;
    result
}

/// Runs on its own thread with its own runtime: Drop cannot await, and the test's runtime may be
/// single-threaded or already shutting down. `WITH (FORCE)` ends the server's open connections.
fn drop_pg_database(admin_url: String, name: String) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(admin_execute(&admin_url, &sql))
            .map_err(|e| e.to_string())
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: could not drop test database {name}: {e}"),
        Err(_) => eprintln!("warning: dropping test database {name} panicked"),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw database access

/// A connection of our own to the test database (not through roster, nor the pooler).
pub async fn raw_db(url: &str) -> DatabaseConnection {
    let url = direct_url(url);
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(2)
        .min_connections(1)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("raw connection to {url}: {e}"))
}

fn placeholders(sql: &str) -> String {
    if on_postgres() {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_owned()
    }
}

/// Appends an event row the way a roster writer would (`snapshot` and `role` NULL) on `conn`
/// (a connection or an open transaction); returns the sequence it took.
/// Appends an event the way every roster writer does: on PostgreSQL, under the shared feed-writers
/// advisory lock held until the transaction ends.
pub async fn insert_raw_event(conn: &impl ConnectionTrait, kind: &str, user_id: &str) -> i64 {
    if conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock_shared($1)",
            [roster::store::FEED_WRITERS_LOCK.into()],
        ))
        .await
        .expect("take the feed writers' lock");
    }
    let at = crate::support::proto::now_micros();
    let sql = placeholders(
        "INSERT INTO user_events (kind, user_id, actor, at, snapshot, role) \
         VALUES (?, ?, 'raw-test', ?, NULL, NULL) RETURNING sequence",
    );
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [kind.into(), user_id.into(), at.into()],
        ))
        .await
        .expect("insert a raw user_events row")
        .expect("RETURNING sequence gives a row");
    row.try_get::<i64>("", "sequence").expect("sequence column")
}

/// What the purge loop does, done directly: removes the events up to `through` and records the
/// horizon.
pub async fn purge_events_through(conn: &DatabaseConnection, through: i64) {
    let backend = conn.get_database_backend();
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        placeholders("DELETE FROM user_events WHERE sequence <= ?"),
        [through.into()],
    ))
    .await
    .expect("delete purged events");
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        placeholders("UPDATE event_horizon SET purged_through = ? WHERE id = 1"),
        [through.into()],
    ))
    .await
    .expect("record the purge horizon");
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL cluster

/// A PostgreSQL cluster of its own (initdb in a tempdir, loopback on a free port, its unix socket
/// inside the tempdir), so that a test may stop and start it. Dropping it stops it
/// (`-m immediate`) and removes its files. As root, the tools run as the `postgres` user.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    initdb: PathBuf,
    pg_ctl: PathBuf,
    run_as_postgres: bool,
}

impl PgCluster {
    /// `initdb` and `pg_ctl`, when this machine has them.
    pub fn tools() -> Option<(PathBuf, PathBuf)> {
        Some((find_tool("initdb")?, find_tool("pg_ctl")?))
    }

    /// Creates and starts a cluster; panics with the tool's output if that fails.
    pub fn start_new((initdb, pg_ctl): (PathBuf, PathBuf)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roster-pg-")
            .tempdir()
            .expect("tempdir for the private cluster");
        std::fs::create_dir(dir.path().join("socket")).expect("socket directory");
        let run_as_postgres = running_as_root();
        if run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown the cluster's tempdir: {status}");
        }
        let cluster = PgCluster {
            port: crate::support::proto::free_port(),
            dir,
            initdb,
            pg_ctl,
            run_as_postgres,
        };
        let data = cluster.data_dir();
        cluster.run_ok(
            &cluster.initdb,
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        cluster.start();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL roster connects with (over TCP on loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster (again) on the same port and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().join("socket").display()
        );
        let (data, log) = (self.data_dir(), self.log_path());
        self.run_ok(
            &self.pg_ctl,
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
    }

    /// `pg_ctl stop -m <mode>` (`fast`: clients are disconnected, `immediate`: a crash), waiting
    /// until the server is gone.
    pub fn stop(&self, mode: &str) {
        let data = self.data_dir();
        self.run_ok(
            &self.pg_ctl,
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-m".as_ref(),
                mode.as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        );
    }

    /// The last 4 KiB of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let cut = text.len().saturating_sub(4096);
        let cut = (cut..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[cut..].to_owned()
    }

    fn command(&self, tool: &Path) -> Command {
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(tool);
            command
        } else {
            Command::new(tool)
        };
        // The tools look up their own path; a working directory they cannot read breaks that.
        command.current_dir(self.dir.path());
        command
    }

    fn run(&self, tool: &Path, args: &[&std::ffi::OsStr]) -> std::io::Result<Output> {
        self.command(tool).args(args).output()
    }

    fn run_ok(&self, tool: &Path, args: &[&std::ffi::OsStr]) {
        let output = self
            .run(tool, args)
            .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\n{}{}\nserver log:\n{}",
            tool.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- log of the private PostgreSQL cluster (tail) ---\n{}",
                self.log_tail()
            );
        }
        // Stopped already, or running: either way nothing must outlive the test.
        let data = self.data_dir();
        let _ = self.run(
            &self.pg_ctl,
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        );
    }
}

/// `name` on PATH, or in the newest `/usr/lib/postgresql/<version>/bin`.
fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|candidate| candidate.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

/// initdb refuses to run as root; the effective uid from /proc tells.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
