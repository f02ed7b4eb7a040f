//! The real `roster` binary as a child process (`roster serve`), for what only a process shows:
//! SIGKILL (a crash), SIGTERM, environment-driven settings, resident memory, two replicas. Every
//! child process comes from the one builder:
//!
//! ```ignore
//! let mut first = Process::launch("first", db.url())
//!     .args(&["--task-item-delay-ms", "100"])
//!     .env("OTEL_SERVICE_NAME", "roster-it")
//!     .start()
//!     .await;                // SERVING on its main port
//! first.sigterm();
//! first.wait_exit(Duration::from_secs(10)).await;
//! ```
//!
//! It listens on a free loopback port, serves metrics on `127.0.0.1:0` (the default,
//! 0.0.0.0:9090, would collide with any other roster on the machine), logs at `info` to a file
//! whose tail a failing test prints, and does not inherit `OTEL_EXPORTER_OTLP_ENDPOINT`.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use super::proto::{POLL, free_loopback_addr, health_status, patient_channel, plain_channel};
use super::server::STARTUP_DEADLINE;

/// Builds a child-process roster; see the module docs.
#[must_use = "a ProcessLaunch does nothing until `start`"]
pub struct ProcessLaunch {
    label: String,
    database_url: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Whether the child also serves health alone on a port of its own.
    health_port: bool,
}

impl ProcessLaunch {
    /// Extra command-line arguments after `serve --listen .. --database-url .. --metrics-listen ..
    /// --http-listen ..`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// An environment variable for the child.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A plaintext health-only port (`--health-listen`) on a free loopback address.
    pub fn health_port(mut self) -> Self {
        self.health_port = true;
        self
    }

    /// Spawns `roster serve` and waits until it reports SERVING on its main port.
    ///
    /// The ports are picked free and handed to the child, which binds them a moment later; in
    /// between, anything else on the machine (a database client's ephemeral port, another test)
    /// may take one. A child that exits for that reason is started again on other ports.
    pub async fn start(self) -> Process {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let mut this = self.spawn();
            let channel = this.channel();
            let deadline = Instant::now() + STARTUP_DEADLINE;
            loop {
                if let Some(status) = this.try_exit_status() {
                    let log = this.log_tail();
                    if log.contains("Address already in use") && attempt < ATTEMPTS {
                        eprintln!(
                            "roster {}: a port was taken before it could bind it; again on others",
                            this.label
                        );
                        break;
                    }
                    panic!(
                        "roster {} exited before SERVING ({status}); log:\n{log}",
                        this.label
                    );
                }
                if let Ok(ServingStatus::Serving) = health_status(&channel).await {
                    return this;
                }
                assert!(
                    Instant::now() < deadline,
                    "roster {} not SERVING within {STARTUP_DEADLINE:?}; log:\n{}",
                    this.label,
                    this.log_tail()
                );
                tokio::time::sleep(POLL).await;
            }
        }
        unreachable!("every attempt either returns or panics")
    }

    /// One child on freshly picked ports.
    fn spawn(&self) -> Process {
        let addr = free_loopback_addr();
        let health_listen = self.health_port.then(free_loopback_addr);
        let http_addr = free_loopback_addr();
        let log_dir = tempfile::tempdir().expect("tempdir for the child's log");
        let log_path = log_dir.path().join(format!("{}.log", self.label));
        let log = std::fs::File::create(&log_path).expect("create the child's log file");
        let binary = roster_binary();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .args([
                "--listen",
                &addr.to_string(),
                "--database-url",
                &self.database_url,
            ])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--http-listen", &http_addr.to_string()])
            // 0 through the pooler (no named prepared statements); roster's default otherwise.
            .args([
                "--database-statement-cache",
                &crate::support::db::statement_cache_for(&self.database_url).to_string(),
            ]);
        if let Some(health) = health_listen {
            command.args(["--health-listen", &health.to_string()]);
        }
        command
            .args(&self.args)
            .env("ROSTER_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        Process {
            label: self.label.clone(),
            child: Some(child),
            addr,
            http_addr,
            health_addr: health_listen,
            log_path,
            _log_dir: log_dir,
        }
    }
}

/// A running `roster serve` child. Dropping it kills it (SIGKILL); if the test is failing, the
/// tail of its log is printed.
pub struct Process {
    label: String,
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The HTTP door (`--http-listen`, a free loopback port: the default 3030 would collide
    /// between children).
    pub http_addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Process {
    /// `roster serve` on `database_url`, labelled `label` in logs and messages.
    pub fn launch(label: &str, database_url: &str) -> ProcessLaunch {
        ProcessLaunch {
            label: label.to_owned(),
            database_url: database_url.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            health_port: false,
        }
    }

    /// A channel to the main port with a 10 s deadline on each call.
    pub fn channel(&self) -> Channel {
        plain_channel(self.addr)
    }

    /// A channel to the main port without a client-side deadline.
    pub fn patient_channel(&self) -> Channel {
        patient_channel(self.addr)
    }

    /// The health-only port (`ProcessLaunch::health_port`).
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
            .expect("started without a health-only port (ProcessLaunch::health_port)")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the child is running").id()
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// SIGKILL (no shutdown, no lease release), then reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the roster child");
            child.wait().expect("reap the killed roster child");
        }
    }

    /// Sends SIGTERM (via `kill`, the test has no libc).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Waits until the process exits; `None` if it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The child's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last 8 KiB of the child's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let len = file.metadata().map_or(0, |m| m.len());
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- log of roster {} (tail) ---\n{}",
                self.label,
                self.log_tail()
            );
        }
    }
}

/// The binary to launch: the one cargo built beside this test, or `ROSTER_TEST_BIN` (a copy kept
/// aside, where several checkouts share one target directory and rebuild its `roster`).
fn roster_binary() -> String {
    std::env::var("ROSTER_TEST_BIN")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_roster").to_owned())
}
