//! What every HTTP request passes, in the order the gRPC gate applies it: a span (continuing the
//! caller's W3C trace), authentication as Stream's SDKs send it, load shedding on the budget the
//! doors share, the request timeout, and metrics labelled by route template. The outer `answer`
//! layer writes every answer's JSON body with its `duration`, errors included.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opentelemetry::propagation::Extractor;
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::error::{Answer, HttpError};
use super::extract::{BodyLimit, query_param};
use crate::domain::access::{Caller, ServerKeys};
use crate::telemetry::metrics::{HTTP_DURATION, HTTP_REQUESTS, HTTP_SHED, HTTP_UNROUTED};

pub(super) struct GateState {
    pub keys: ServerKeys,
    /// `None`: any `api_key` is accepted.
    pub api_key: Option<String>,
    pub permits: Arc<Semaphore>,
    pub timeout: Duration,
    pub max_body_bytes: usize,
}

impl GateState {
    /// The caller: `?api_key=` naming this server's app, then `Authorization: <server token>`
    /// (bare, as the SDKs send it; a `Bearer ` prefix is tolerated) with `stream-auth-type: jwt`.
    fn authenticate(&self, request: &Request) -> Result<Caller, HttpError> {
        if let Some(key) = &self.api_key
            && query_param(request.uri(), "api_key").as_deref() != Some(key.as_str())
        {
            return Err(HttpError::wrong_api_key());
        }
        let headers = request.headers();
        match headers.get("stream-auth-type").map(HeaderValue::to_str) {
            None => {}
            Some(Ok(kind)) if kind.eq_ignore_ascii_case("jwt") => {}
            Some(_) => return Err(HttpError::wrong_auth_type()),
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
        self.keys.verify(token).map_err(HttpError::refused)
    }
}

/// The inner layer, on matched routes only (so the route template is known).
pub(super) async fn gate(
    State(state): State<Arc<GateState>>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = matched
        .as_ref()
        .map_or("unknown", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        caller = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);

    let response = async {
        let caller = match state.authenticate(&request) {
            Ok(caller) => caller,
            Err(refusal) => return refusal.into_response(),
        };
        if let Some(name) = caller.name() {
            tracing::Span::current().record("caller", name.as_str());
        }
        let Ok(permit) = state.permits.clone().try_acquire_owned() else {
            metrics::counter!(HTTP_SHED).increment(1);
            return HttpError::shed().into_response();
        };
        request.extensions_mut().insert(caller);
        request
            .extensions_mut()
            .insert(BodyLimit(state.max_body_bytes));
        let response = match tokio::time::timeout(state.timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => HttpError::timed_out().into_response(),
        };
        drop(permit);
        response
    }
    .instrument(span.clone())
    .await;

    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status.as_str().to_owned()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// The fallback of paths no route matches: counted without labels, answered 404.
pub(super) async fn unrouted() -> HttpError {
    metrics::counter!(HTTP_UNROUTED).increment(1);
    HttpError::from_status(axum::http::StatusCode::NOT_FOUND)
}

/// The outer layer: every answer leaves as JSON with its `duration`. An answer axum gave on its
/// own (a method a route does not take) becomes an error body with its status.
pub(super) async fn answer(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let duration = format!("{:.2}ms", started.elapsed().as_secs_f64() * 1000.0);
    let body = match response.extensions_mut().remove::<Answer>() {
        Some(Answer::Ok(mut fields)) => {
            fields.insert("duration".to_owned(), Value::String(duration));
            Value::Object(fields)
        }
        Some(Answer::Err(refusal)) => {
            *response.status_mut() = refusal.status;
            refusal.body(&duration)
        }
        None => HttpError::from_status(response.status()).body(&duration),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}

/// A bounded label for the request method.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}
