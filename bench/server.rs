//! The roster under test: a child process started on free loopback ports, gRPC and HTTP (no API
//! secrets, so it serves on loopback unauthenticated), or addresses given with `--addr` and
//! `--http-addr`.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

pub struct Server {
    pub addr: String,
    /// The Stream-compatible HTTP door, when known.
    pub http_addr: Option<String>,
    child: Option<Child>,
    log_path: Option<PathBuf>,
}

impl Server {
    /// Starts `roster serve` against `database_url` and waits until it reports SERVING.
    pub async fn spawn(binary: &Path, database_url: &str, log_path: &Path) -> anyhow::Result<Self> {
        let addr = free_loopback_addr()?;
        // A port of its own rather than `:0`: roster logs the address it bound at `info`, which
        // the bench filters out.
        let http_addr = free_loopback_addr()?;
        let log_path = log_path.to_owned();
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary);
        // The caller's ROSTER_* settings (an API secret, a metrics port) are not this run's.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ROSTER_") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg("serve")
            .args(["--listen", &addr, "--database-url", database_url])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--http-listen", &http_addr])
            .args(["--log-format", "json"])
            .env("ROSTER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it first: cargo build --release --bins)",
                    binary.display()
                )
            })?;
        let mut server = Server {
            addr,
            http_addr: Some(http_addr),
            child: Some(child),
            log_path: Some(log_path),
        };
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "roster exited before SERVING ({status}); log:\n{}",
                    server.log_tail()
                );
            }
            if is_serving(&server.addr).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "roster not SERVING within {STARTUP_DEADLINE:?}; log:\n{}",
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A roster someone else runs.
    pub async fn existing(addr: &str, http_addr: Option<&str>) -> anyhow::Result<Self> {
        if !is_serving(addr).await {
            bail!("no SERVING roster at {addr}");
        }
        Ok(Server {
            addr: addr.to_owned(),
            http_addr: http_addr.map(str::to_owned),
            child: None,
            log_path: None,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new HTTP/2 connection to the server.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }

    /// SIGTERM, then wait for the graceful shutdown (SIGKILL after 20 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let Some(path) = &self.log_path else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback address whose port was free a moment ago (the child binds it right after).
fn free_loopback_addr() -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

async fn is_serving(addr: &str) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Rss {
    /// VmRSS, KiB.
    pub current_kib: u64,
    /// VmHWM (the peak so far), KiB.
    pub peak_kib: u64,
}

pub fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(Rss {
        current_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Samples VmRSS every 100 ms and keeps the highest (VmHWM says the same; this also works where
/// VmHWM is reset or missing).
pub fn sample_peak_rss(pid: u32) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let seen = peak.clone();
    let handle = tokio::spawn(async move {
        while let Some(rss) = rss(pid) {
            seen.fetch_max(rss.current_kib, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (peak, handle)
}
