//! Support for the fault and load tests: a private PostgreSQL cluster the test may stop and start,
//! writers that record which batches roster acknowledged, a check that every acknowledged batch is
//! stored whole and no batch is stored in part, the real process's resident memory, and how long
//! the scenarios run.
//!
//! Durations: `ROSTER_FAULT_SECS=<n>` runs the sustained load for `n` seconds and scales the
//! outage and crash scenarios with it (one outage, one crash per 20 s); `ROSTER_FAULT_LONG=1` is
//! `ROSTER_FAULT_SECS=300`. Unset, the scenarios are sized for CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roster::pb::{UpdateUsersRequest, User};
use serde_json::json;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{UserRequestExt, custom_of, user};
use crate::task_support::users_client;

// ---------------------------------------------------------------------------------------------
// How long

/// Sizes of the scenarios, from `ROSTER_FAULT_SECS` / `ROSTER_FAULT_LONG`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// How long the sustained load runs.
    pub load: Duration,
    /// Database outages in the outage scenario.
    pub outages: usize,
    /// How long each outage lasts.
    pub outage: Duration,
    /// SIGKILLs in the crash scenario.
    pub crashes: usize,
    /// Load before each SIGKILL.
    pub before_crash: Duration,
}

pub fn scale() -> Scale {
    let secs = std::env::var("ROSTER_FAULT_SECS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("ROSTER_FAULT_SECS must be a number of seconds: {s:?}"))
        })
        .or_else(|| match std::env::var("ROSTER_FAULT_LONG").as_deref() {
            Ok("1") | Ok("true") | Ok("yes") => Some(300),
            _ => None,
        });
    match secs {
        None => Scale {
            load: Duration::from_secs(10),
            outages: 1,
            outage: Duration::from_secs(4),
            crashes: 1,
            before_crash: Duration::from_secs(3),
        },
        Some(secs) => {
            let secs = secs.max(1);
            let rounds = usize::try_from(secs / 20).unwrap_or(usize::MAX).max(1);
            Scale {
                load: Duration::from_secs(secs),
                outages: rounds,
                outage: Duration::from_secs(5),
                crashes: rounds,
                before_crash: Duration::from_secs(5),
            }
        }
    }
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
            port: crate::ops_support::free_port(),
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

/// A plaintext channel to `addr` without a client-side deadline, so that what roster answers
/// (after waiting for a database connection) is what the test sees.
pub fn patient_channel(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

// ---------------------------------------------------------------------------------------------
// Writers and what they were told

/// Users per UpdateUsers batch; each batch is all or nothing.
pub const BATCH: usize = 5;

/// One UpdateUsers call and its answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The batch marker, also the prefix of its users' ids.
    pub batch: String,
    pub ids: Vec<String>,
    /// `None` when roster answered OK.
    pub error: Option<(Code, String)>,
    /// When the answer arrived.
    pub answered: Instant,
}

impl Attempt {
    pub fn acknowledged(&self) -> bool {
        self.error.is_none()
    }
}

/// Writes batches of `BATCH` new users (`<prefix>-<seq>-<i>`, each with `custom.batch`) one after
/// another until `stop` is set, pausing `pause` after each answer; counts acknowledged batches in
/// `acked`; returns every attempt.
pub async fn write_batches(
    channel: Channel,
    prefix: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Vec<Attempt> {
    let mut client = users_client(&channel);
    let mut attempts = Vec::new();
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let batch = format!("{prefix}-{seq:05}");
        seq += 1;
        let ids: Vec<String> = (0..BATCH).map(|i| format!("{batch}-{i}")).collect();
        let users = ids
            .iter()
            .map(|id| {
                let request = user(id)
                    .with_name(&format!("Writer {prefix}"))
                    .with_custom(json!({"batch": batch, "size": BATCH}));
                (id.clone(), request)
            })
            .collect();
        let outcome = client.update_users(UpdateUsersRequest { users }).await;
        let error = match outcome {
            Ok(response) => {
                let stored = response.into_inner().users;
                assert_eq!(
                    stored.len(),
                    BATCH,
                    "UpdateUsers {batch} answered OK with {} users",
                    stored.len()
                );
                acked.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(status) => Some((status.code(), status.message().to_owned())),
        };
        attempts.push(Attempt {
            batch,
            ids,
            error,
            answered: Instant::now(),
        });
        tokio::time::sleep(pause).await;
    }
    attempts
}

/// Checks the stored users against the attempts: an acknowledged batch is stored whole, any
/// batch is stored whole or not at all, each stored user carries its own batch marker, and no
/// user of `prefix` exists that no attempt wrote. Panics listing every violation (up to 30).
pub fn assert_batches_durable(
    what: &str,
    prefix: &str,
    attempts: &[Attempt],
    stored: &BTreeMap<String, User>,
) {
    let mut problems = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for attempt in attempts {
        let (present, missing): (Vec<&String>, Vec<&String>) =
            attempt.ids.iter().partition(|id| stored.contains_key(*id));
        written.extend(attempt.ids.iter().cloned());
        if attempt.acknowledged() && !missing.is_empty() {
            problems.push(format!(
                "batch {} was acknowledged OK but {missing:?} are missing",
                attempt.batch
            ));
        } else if !present.is_empty() && !missing.is_empty() {
            problems.push(format!(
                "batch {} (answered {:?}) is half-applied: {present:?} stored, {missing:?} not",
                attempt.batch, attempt.error
            ));
        }
        for id in present {
            let marker = custom_of(&stored[id])["batch"].clone();
            if marker != json!(attempt.batch) {
                problems.push(format!(
                    "{id} carries batch marker {marker}, not {:?}",
                    attempt.batch
                ));
            }
        }
    }
    for id in stored.keys().filter(|id| id.starts_with(prefix)) {
        if !written.contains(id) {
            problems.push(format!("{id} is stored but no attempt wrote it"));
        }
    }
    let acknowledged = attempts.iter().filter(|a| a.acknowledged()).count();
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s) over {} batches ({acknowledged} acknowledged), first ones:\n{}",
        problems.len(),
        attempts.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How many answers of each code, for messages.
pub fn code_counts<'a>(codes: impl IntoIterator<Item = &'a Code>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for code in codes {
        *counts.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Memory

/// Resident memory (VmRSS) of process `pid`, in KiB; `None` once the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Samples `rss_kib(pid)` every `every` until `stop` is set.
pub async fn sample_rss(pid: u32, every: Duration, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(kib) = rss_kib(pid) {
            samples.push(kib);
        }
        tokio::time::sleep(every).await;
    }
    samples
}
