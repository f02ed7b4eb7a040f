//! A fake product: a `ProductHook` server inside the test, on `127.0.0.1:0`, that records every
//! call and answers as its `Behavior` says; and roster's system owner of a deleted user.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster::product_pb::product_hook_server::{ProductHook, ProductHookServer};
use roster::product_pb::{HandleUserEventRequest, HandleUserEventResponse};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// How a fake product answers. The default answers OK at once.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Answer UNAVAILABLE to the first `fail_first` attempts of every idempotency key.
    pub fail_first: u32,
    /// Answer INTERNAL to every call.
    pub always_fail: bool,
    /// Sleep this long before answering (every call).
    pub delay: Duration,
    /// Sleep `hang` before answering the first `hang_first` attempts of every key (longer than
    /// roster's per-call deadline: roster gives up first).
    pub hang_first: u32,
    pub hang: Duration,
    /// Sleep `slow` before answering every call from the `slow_from`-th on (1-based, counting
    /// all calls); 0: never.
    pub slow_from: usize,
    pub slow: Duration,
}

/// One call the fake product received.
#[derive(Debug, Clone)]
pub struct Call {
    pub request: HandleUserEventRequest,
    /// When it arrived.
    pub at: Instant,
    /// 1 for the first call with this idempotency key, 2 for the second, ...
    pub attempt: u32,
}

struct State {
    behavior: Behavior,
    calls: Mutex<Vec<Call>>,
    attempts: Mutex<BTreeMap<String, u32>>,
    /// Bumped on every call, so that waiters need no polling interval.
    count: watch::Sender<usize>,
}

#[derive(Clone)]
struct Hook(Arc<State>);

#[tonic::async_trait]
impl ProductHook for Hook {
    async fn handle_user_event(
        &self,
        request: Request<HandleUserEventRequest>,
    ) -> Result<Response<HandleUserEventResponse>, Status> {
        let state = &self.0;
        let request = request.into_inner();
        let attempt = {
            let mut attempts = state.attempts.lock().expect("attempts lock");
            let n = attempts.entry(request.idempotency_key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let n = {
            let mut calls = state.calls.lock().expect("calls lock");
            calls.push(Call {
                request,
                at: Instant::now(),
                attempt,
            });
            let n = calls.len();
            state.count.send_replace(n);
            n
        };
        let b = &state.behavior;
        if b.slow_from > 0 && n >= b.slow_from {
            tokio::time::sleep(b.slow).await;
        }
        if attempt <= b.hang_first {
            tokio::time::sleep(b.hang).await;
        }
        if !b.delay.is_zero() {
            tokio::time::sleep(b.delay).await;
        }
        if b.always_fail {
            return Err(Status::internal("the fake product always fails"));
        }
        if attempt <= b.fail_first {
            return Err(Status::unavailable(format!(
                "the fake product fails attempt {attempt}"
            )));
        }
        Ok(Response::new(HandleUserEventResponse {}))
    }
}

/// A `ProductHook` server inside the test. Dropping it stops it.
pub struct FakeProduct {
    name: String,
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl FakeProduct {
    /// A product that answers OK at once.
    pub async fn start(name: &str) -> Self {
        Self::with(name, Behavior::default()).await
    }

    pub async fn with(name: &str, behavior: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake product on 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake product address");
        let (count, _) = watch::channel(0);
        let state = Arc::new(State {
            behavior,
            calls: Mutex::new(Vec::new()),
            attempts: Mutex::new(BTreeMap::new()),
            count,
        });
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let service = ProductHookServer::new(Hook(state.clone()));
        let server = tokio::spawn(async move {
            let result = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("fake product server ended with {e}");
            }
        });
        FakeProduct {
            name: name.to_owned(),
            addr,
            state,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name=http://127.0.0.1:port`, as `--products` takes it.
    pub fn spec(&self) -> String {
        format!("{}=http://{}", self.name, self.addr)
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().expect("calls lock").clone()
    }

    pub fn call_count(&self) -> usize {
        *self.state.count.borrow()
    }

    /// The calls for one user, in arrival order.
    pub fn calls_for(&self, user_id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.request.user_id == user_id)
            .collect()
    }

    /// Waits until at least `n` calls arrived; panics after `within`.
    pub async fn wait_for_calls(&self, n: usize, within: Duration) {
        let mut rx = self.state.count.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|count| *count >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "product {} received {} calls within {within:?}, expected at least {n}",
            self.name,
            self.call_count()
        );
    }
}

impl Drop for FakeProduct {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// `name=http://127.0.0.1:port` where nothing listens (the port was bound, then released).
pub fn unreachable_product(name: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("{name}=http://{addr}")
}

/// roster's system owner for a deleted user, computed independently of the server:
/// `delete-user-<first 16 hex digits of SHA-256 of the user id>`.
pub fn system_owner(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("delete-user-{hex}")
}
