//! SPEC 13: OpenTelemetry traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, continuing
//! the caller's W3C `traceparent`. A fake collector inside the test receives the spans of the
//! real binary.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use roster::pb::GetUserRequest;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

use crate::support::*;

const GET_USER: &str = "roster.v1.UserService/GetUser";

/// Every span exported to it, with the `service.name` of its resource.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().expect("collector lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }

    fn find(&self, name: &str, trace_id: &[u8]) -> Option<(String, Span)> {
        self.spans
            .lock()
            .expect("collector lock")
            .iter()
            .find(|(_, s)| s.name == name && s.trace_id == trace_id)
            .cloned()
    }

    fn names(&self) -> Vec<String> {
        self.spans
            .lock()
            .expect("collector lock")
            .iter()
            .map(|(_, s)| s.name.clone())
            .collect()
    }
}

/// A fresh `traceparent`: (header, trace id hex, parent span id hex).
fn traceparent() -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

/// GetUser of a missing user with `traceparent`; NOT_FOUND expected.
async fn traced_get_user(channel: &tonic::transport::Channel, traceparent: &str) {
    let mut request = Request::new(GetUserRequest {
        id: "nobody".to_owned(),
        include_deleted: false,
    });
    request.metadata_mut().insert(
        "traceparent",
        traceparent.parse().expect("ASCII traceparent"),
    );
    let status = users_client(channel)
        .get_user(request)
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

/// Waits (bounded) for the GetUser span of `trace_id`.
async fn wait_span(
    collector: &Collector,
    trace_id: &[u8],
    within: Duration,
    process: &Process,
) -> (String, Span) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = collector.find(GET_USER, trace_id) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {GET_USER} span of the trace within {within:?}; spans received: {:?}; log:\n{}",
            collector.names(),
            process.log_tail()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn assert_continues(span: &Span, trace_hex: &str, parent_hex: &str) {
    assert_eq!(span.trace_id, unhex(trace_hex), "trace id continued");
    assert_eq!(
        span.parent_span_id,
        unhex(parent_hex),
        "parent span id is the caller's"
    );
    assert_ne!(
        span.span_id,
        unhex(parent_hex),
        "the RPC span is a new span"
    );
    // SpanKind::Server = 2
    assert_eq!(span.kind, 2, "a server span: {span:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_span_reaches_the_collector_continuing_the_callers_trace() {
    let (collector, collector_addr) = Collector::start().await;
    let db = TestDb::create().await;
    let endpoint = format!("http://{collector_addr}");
    let mut roster = Process::launch("traced", db.url())
        .args(&["--shutdown-grace-seconds", "5"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "roster-it")
        .start()
        .await;
    let channel = roster.channel();

    let (header, trace_hex, parent_hex) = traceparent();
    traced_get_user(&channel, &header).await;
    let (service, span) = wait_span(
        &collector,
        &unhex(&trace_hex),
        Duration::from_secs(10),
        &roster,
    )
    .await;
    assert_continues(&span, &trace_hex, &parent_hex);
    assert!(
        service.contains("roster-it"),
        "service.name from OTEL_SERVICE_NAME: {service}"
    );

    // A call without traceparent starts a trace of its own (no parent).
    let before = collector.names().len();
    let status = users_client(&channel)
        .get_user(GetUserRequest {
            id: "nobody".to_owned(),
            include_deleted: false,
        })
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound);
    let deadline = Instant::now() + Duration::from_secs(10);
    let root = loop {
        let found = collector
            .spans
            .lock()
            .expect("collector lock")
            .iter()
            .skip(before)
            .find(|(_, s)| s.name == GET_USER)
            .map(|(_, s)| s.clone());
        if let Some(span) = found {
            break span;
        }
        assert!(Instant::now() < deadline, "no span for the untraced call");
        tokio::time::sleep(POLL).await;
    };
    assert!(root.parent_span_id.is_empty(), "a root span: {root:?}");
    assert_ne!(root.trace_id, unhex(&trace_hex));

    roster.sigterm();
    let exit = roster.wait_exit(Duration::from_secs(10)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "exits 0 after SIGTERM: {exit:?}; log:\n{}",
        roster.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_spans_not_yet_exported() {
    let (collector, collector_addr) = Collector::start().await;
    let db = TestDb::create().await;
    let endpoint = format!("http://{collector_addr}");
    // The batch would only go out after a minute: only the shutdown flush can deliver it.
    let mut roster = Process::launch("flushed", db.url())
        .args(&["--shutdown-grace-seconds", "5"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .start()
        .await;
    let (header, trace_hex, parent_hex) = traceparent();
    traced_get_user(&roster.channel(), &header).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.find(GET_USER, &unhex(&trace_hex)).is_none(),
        "exported before the schedule delay: the test would prove nothing"
    );
    roster.sigterm();
    let exit = roster.wait_exit(Duration::from_secs(15)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "exits 0 after SIGTERM: {exit:?}; log:\n{}",
        roster.log_tail()
    );
    let (_, span) = wait_span(
        &collector,
        &unhex(&trace_hex),
        Duration::from_secs(2),
        &roster,
    )
    .await;
    assert_continues(&span, &trace_hex, &parent_hex);
}
