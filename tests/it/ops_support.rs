//! Support for the operations tests (auth, TLS, limits, metrics, traces, shutdown): an in-process
//! server on a listener the test bound, whose readiness is checked over a channel the test built
//! (TLS, mTLS); the real binary with extra environment and a SIGTERM; bearer tokens; a tiny HTTP
//! GET.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::TestDb;

/// How long a server may take to report SERVING (PostgreSQL on a busy box).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(10);

/// A port that was free a moment ago (for settings that take an address, not a listener).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

pub fn free_loopback_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A plaintext channel that connects on first use.
pub fn plain_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// Health of service "" over `channel`: the status, or why there is none.
pub async fn health_status(channel: &Channel) -> Result<ServingStatus, String> {
    let mut health = HealthClient::new(channel.clone());
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(response)) => Ok(response.get_ref().status()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("health check timed out".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// In-process server

/// `roster::run` on a listener and config the test chose. Dropping it stops it.
pub struct InProcess {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), String>>>,
    _db: Arc<TestDb>,
}

/// The shutdown future handed to `run`/`serve`: boxed, so one launcher serves both.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl InProcess {
    /// Starts `run` on `listener` with the default config plus the database, the listen address
    /// and `tweak`; does not wait for SERVING (see `wait_serving`).
    pub fn launch(
        listener: TcpListener,
        db: Arc<TestDb>,
        tweak: impl FnOnce(&mut roster::Config),
    ) -> Self {
        let addr = listener.local_addr().expect("listener address");
        Self::start(addr, db, tweak, move |config, shutdown| {
            roster::run(config, listener, shutdown)
        })
    }

    /// Starts `serve` on `listeners` (health-only and metrics ports included, bound by the test)
    /// with its background work on `tasks`, so the test can see what is still running.
    pub fn launch_serve(
        listeners: roster::server::Listeners,
        tasks: tokio_util::task::TaskTracker,
        db: Arc<TestDb>,
        tweak: impl FnOnce(&mut roster::Config),
    ) -> Self {
        let addr = listeners.main.local_addr().expect("listener address");
        Self::start(addr, db, tweak, move |config, shutdown| {
            roster::server::serve(config, listeners, tasks, shutdown)
        })
    }

    fn start<F, R>(
        addr: SocketAddr,
        db: Arc<TestDb>,
        tweak: impl FnOnce(&mut roster::Config),
        run: F,
    ) -> Self
    where
        F: FnOnce(roster::Config, Shutdown) -> R + Send + 'static,
        R: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let mut config = roster::Config {
            database_url: db.url().into(),
            listen: addr,
            metrics_listen: None,
            ..roster::Config::default()
        };
        tweak(&mut config);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown: Shutdown = Box::pin(async move {
                let _ = shutdown_rx.await;
            });
            run(config, shutdown).await.map_err(|e| format!("{e:#}"))
        });
        InProcess {
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
            _db: db,
        }
    }

    /// Signals shutdown without waiting for `run` to return (see `stop`).
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Polls health over `channel` until SERVING; fails fast if `run` returns first.
    pub async fn wait_serving(&mut self, channel: &Channel) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if self.server.as_ref().is_some_and(JoinHandle::is_finished) {
                let server = self.server.take().expect("server handle");
                panic!("roster::run returned before SERVING: {:?}", server.await);
            }
            let last = match health_status(channel).await {
                Ok(ServingStatus::Serving) => return,
                other => other,
            };
            assert!(
                Instant::now() < deadline,
                "roster not SERVING within {STARTUP_DEADLINE:?}; last: {last:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Signals shutdown and waits (bounded) for `run` to return.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = self.server.take().expect("server handle");
        match tokio::time::timeout(Duration::from_secs(20), server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("server task failed: {join}")),
            Err(_) => Err("run did not return within 20 s of shutdown".to_owned()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// `roster serve` as a child process, with extra environment; metrics on a free loopback port
/// (the default, 0.0.0.0:9090, would collide with any other roster on the machine). Dropping it
/// kills it; a failing test prints the tail of its log.
pub struct OpsProcess {
    label: String,
    child: Option<Child>,
    pub addr: SocketAddr,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl OpsProcess {
    /// Starts `roster serve --listen 127.0.0.1:<free> --database-url <url> --metrics-listen
    /// 127.0.0.1:<free> <extra...>` with `env` added, and waits until it reports SERVING.
    pub async fn spawn(
        label: &str,
        database_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let addr = free_loopback_addr();
        let metrics = free_loopback_addr();
        let log_dir = tempfile::tempdir().expect("tempdir for the child's log");
        let log_path = log_dir.path().join(format!("{label}.log"));
        let log = std::fs::File::create(&log_path).expect("create the child's log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .arg("serve")
            .args([
                "--listen",
                &addr.to_string(),
                "--database-url",
                database_url,
            ])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(extra)
            .env("ROSTER_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", env!("CARGO_BIN_EXE_roster")));
        let mut this = OpsProcess {
            label: label.to_owned(),
            child: Some(child),
            addr,
            log_path,
            _log_dir: log_dir,
        };
        let channel = this.channel();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = this.try_exit_status() {
                panic!(
                    "roster {label} exited before SERVING ({status}); log:\n{}",
                    this.log_tail()
                );
            }
            if let Ok(ServingStatus::Serving) = health_status(&channel).await {
                return this;
            }
            assert!(
                Instant::now() < deadline,
                "roster {label} not SERVING within {STARTUP_DEADLINE:?}; log:\n{}",
                this.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn channel(&self) -> Channel {
        plain_channel(self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the child is running").id()
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
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

impl Drop for OpsProcess {
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

// ---------------------------------------------------------------------------------------------
// Tokens and requests

/// An HS256 JWT over `claims`, signed with `secret`.
pub fn token(secret: &str, claims: &Json) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("sign a JWT")
}

/// `message` with `authorization: <value>`.
pub fn with_authorization<T>(message: T, value: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        value.parse().expect("ASCII authorization header"),
    );
    request
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    with_authorization(message, &format!("Bearer {token}"))
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `GET <path>` over HTTP/1.1 from `addr`: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        socket
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no header end in {text:?}"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok((code, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET {path} from {addr} timed out"))?
}

/// Bytes of a hex string (test data only; panics on bad input).
pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}
