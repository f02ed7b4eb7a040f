//! The front door every call passes: a span (continuing the caller's W3C trace), caller
//! authentication, load shedding, and the RPC metrics. Health and reflection need no token.
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use opentelemetry::propagation::Extractor;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::access::{Caller, ServerKeys, TokenRefusal};
use crate::domain::time::Clock;
use crate::telemetry::metrics::{RPC_DURATION, RPC_REQUESTS, RPC_SHED, RPC_UNROUTED};

struct GateState {
    keys: ServerKeys,
    permits: Arc<Semaphore>,
}

#[derive(Clone)]
pub struct GateLayer {
    state: Arc<GateState>,
}

impl GateLayer {
    /// `permits` is the process's budget of calls served at once, shared with the HTTP door.
    pub fn new(
        api_secrets: &[crate::config::Secret],
        permits: Arc<Semaphore>,
        clock: Clock,
        leeway: Duration,
    ) -> anyhow::Result<Self> {
        Ok(GateLayer {
            state: Arc::new(GateState {
                keys: ServerKeys::new(api_secrets.iter().map(|s| s.expose()), clock, leeway)?,
                permits,
            }),
        })
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    state: Arc<GateState>,
}

impl GateState {
    /// The caller, from `authorization: Bearer <server token>`.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        self.keys.verify(token).map_err(|refusal| match refusal {
            TokenRefusal::Missing => {
                Status::unauthenticated("missing `authorization: Bearer <token>`")
            }
            TokenRefusal::Invalid => Status::unauthenticated("invalid token"),
            TokenRefusal::UserToken => Status::unauthenticated(refusal.to_string()),
            TokenRefusal::Time(problem) => Status::unauthenticated(problem.describe()),
        })
    }
}

/// The RPC a request path names (`roster.v1.UserService/GetUser`), if it is one roster serves:
/// roster's services as the generated descriptors list them, health and reflection. Anything else
/// is `None`, so that metric labels come from this fixed set and never from the caller.
fn known_method(path: &str) -> Option<&'static str> {
    use std::collections::HashSet;
    use std::sync::OnceLock;
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        use prost::Message;
        let mut known: HashSet<String> = [
            "grpc.health.v1.Health/Check",
            "grpc.health.v1.Health/Watch",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        let files = prost_types::FileDescriptorSet::decode(super::pb::FILE_DESCRIPTOR_SET)
            .map(|set| set.file)
            .unwrap_or_default();
        for file in files {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    let method = method.name.unwrap_or_default();
                    known.insert(format!("{package}.{service_name}/{method}"));
                }
            }
        }
        known
    });
    known.get(path.trim_start_matches('/')).map(String::as_str)
}

fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Gate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = known_method(request.uri().path());
        let name = method.unwrap_or("unknown");
        let span = tracing::info_span!(
            "rpc",
            otel.name = name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = name,
            rpc.grpc.status_code = tracing::field::Empty,
            caller = tracing::field::Empty,
            user_ids = tracing::field::Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let finish = move |span: &tracing::Span, method: Option<&'static str>, code: i32| {
            span.record("rpc.grpc.status_code", code);
            let Some(method) = method else {
                metrics::counter!(RPC_UNROUTED).increment(1);
                return;
            };
            let labels = [("method", method), ("code", code_name(code))];
            metrics::counter!(RPC_REQUESTS, &labels).increment(1);
            metrics::histogram!(RPC_DURATION, &labels).record(started.elapsed().as_secs_f64());
        };

        let mut permit = None;
        if !is_open(request.uri().path()) {
            match self.state.authenticate(request.headers()) {
                Ok(caller) => {
                    if let Some(name) = caller.name() {
                        span.record("caller", name.as_str());
                    }
                    request.extensions_mut().insert(caller);
                }
                Err(status) => {
                    finish(&span, method, status.code() as i32);
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
            match self.state.permits.clone().try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => {
                    metrics::counter!(RPC_SHED).increment(1);
                    let status = Status::resource_exhausted(
                        "roster is at its concurrency limit; retry with backoff",
                    );
                    finish(&span, method, status.code() as i32);
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        Box::pin(async move {
            let mut response = inner.call(request).instrument(span.clone()).await?;
            too_large_is_resource_exhausted(&mut response);
            // A trailers-only response (an error) carries the code in its headers; otherwise the
            // call succeeded as far as the headers go (a stream may still end with an error).
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            finish(&span, method, code);
            drop(permit);
            Ok(response)
        })
    }
}

/// How tonic's refusal of a request over the size limit starts (`grpc-message`, percent-encoded).
const TONIC_TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

/// tonic refuses a request message over the size limit with OUT_OF_RANGE; gRPC's status code
/// table says RESOURCE_EXHAUSTED ("request message larger than configured maximum"), which is
/// what clients of other gRPC stacks retry and alert on. The refusal is trailers-only (the body
/// was never decoded), so its code is in the headers.
fn too_large_is_resource_exhausted(response: &mut http::Response<Body>) {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.starts_with(TONIC_TOO_LARGE));
    if too_large {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static("8"), // RESOURCE_EXHAUSTED
        );
    }
}

fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
