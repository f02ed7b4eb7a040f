//! Prometheus metrics: the `metrics` facade everywhere, one process-wide recorder, and
//! `GET /metrics` per server.
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

pub const RPC_REQUESTS: &str = "roster_rpc_requests_total";
pub const RPC_DURATION: &str = "roster_rpc_duration_seconds";
pub const RPC_SHED: &str = "roster_rpc_shed_total";
/// Requests for a path that names none of roster's RPCs: counted, with no label, so that no
/// caller can add series by inventing paths.
pub const RPC_UNROUTED: &str = "roster_rpc_unrouted_total";
/// The HTTP door's requests, labelled by route template (`/api/v2/users/{user_id}/deactivate`,
/// never the raw path), method and HTTP status.
pub const HTTP_REQUESTS: &str = "roster_http_requests_total";
pub const HTTP_DURATION: &str = "roster_http_duration_seconds";
pub const HTTP_SHED: &str = "roster_http_shed_total";
/// HTTP requests for a path no route matches: counted without labels, like `RPC_UNROUTED`.
pub const HTTP_UNROUTED: &str = "roster_http_unrouted_total";
pub const TASK_QUEUE_DEPTH: &str = "roster_task_queue_depth";
pub const TASK_OLDEST_PENDING_AGE: &str = "roster_task_oldest_pending_age_seconds";
/// Unfinished tasks this binary leaves for another, because it does not know their kind or
/// payload version (see `Store::claim_task`).
pub const TASKS_UNDECODABLE: &str = "roster_tasks_undecodable";
pub const TASK_DURATION: &str = "roster_task_duration_seconds";
pub const TASK_ITEM_DURATION: &str = "roster_task_item_duration_seconds";
pub const PRODUCT_HOOK_FAILURES: &str = "roster_product_hook_failures_total";
pub const DB_POOL_IN_USE: &str = "roster_db_pool_connections_in_use";
pub const DB_POOL_SIZE: &str = "roster_db_pool_connections";

/// Buckets for request and task latencies, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder (installed once, however many servers the process runs).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's); then ours only
        // renders what it sees, which is nothing, rather than failing the start.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Serves `GET /metrics` in the Prometheus text format until `stop`, then lets the answers under
/// way finish. HTTP/1.1 and h2c by hyper, through axum: requests split across packets, keep-alive
/// and accept errors (a full file table) are handled there, not here.
pub async fn serve(listener: TcpListener, stop: CancellationToken) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                handle().render(),
            )
        }),
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(err) = served {
        tracing::error!(error = %crate::error::Chain(&err), "serving /metrics failed");
    }
}

/// Samples gauges that live in the database or the pool, every few seconds, until `stop`.
/// `store` is the server's own (its pool, its clock), so the pool gauges describe the pool that
/// serves calls and the oldest pending age is measured by the configured clock.
pub async fn sample(store: Store, stop: CancellationToken) {
    loop {
        if let Ok(queue) = store.task_queue().await {
            metrics::gauge!(TASK_QUEUE_DEPTH).set(queue.depth as f64);
            metrics::gauge!(TASK_OLDEST_PENDING_AGE).set(queue.oldest_pending_age.as_secs_f64());
        }
        let pool = store.pool_status();
        metrics::gauge!(DB_POOL_IN_USE).set(pool.in_use as f64);
        metrics::gauge!(DB_POOL_SIZE).set(pool.size as f64);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}
