//! SPEC 13: Prometheus metrics at `GET /metrics`: per-RPC counters and latency histograms by
//! method and code, task queue and connection pool gauges.
//!
//! The recorder is process-wide and other tests run in this process at the same time, so counts
//! are checked as lower bounds.

use std::time::Duration;

use roster::pb::GetUserRequest;
use tokio::time::Instant;
use tonic::Code;

use crate::harness::user;
use crate::ops_support::{POLL, free_loopback_addr, http_get};
use crate::task_support::{Roster, users_client};

const GET_USER: &str = "roster.v1.UserService/GetUser";

/// The value of the first sample line of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = if labels.is_empty() {
                rest.is_empty() || rest.starts_with('{')
            } else {
                rest.starts_with('{') && labels.iter().all(|l| rest.contains(l))
            };
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .next()
}

#[tokio::test]
async fn metrics_endpoint_reports_rpcs_by_method_and_code_and_the_gauges() {
    let metrics_addr = free_loopback_addr();
    let server = Roster::start(|config| config.metrics_listen = Some(metrics_addr)).await;
    let channel = server.channel();
    let mut users = users_client(&channel);
    users
        .update_users(roster::pb::UpdateUsersRequest {
            users: [("m1".to_owned(), user("m1"))].into(),
        })
        .await
        .expect("UpdateUsers");
    let get = |id: &str| GetUserRequest {
        id: id.to_owned(),
        include_deleted: false,
    };
    for _ in 0..3 {
        users.get_user(get("m1")).await.expect("GetUser m1");
    }
    for _ in 0..2 {
        let status = users.get_user(get("missing")).await.expect_err("missing");
        assert_eq!(status.code(), Code::NotFound);
    }

    let method = format!("method=\"{GET_USER}\"");
    let checks: Vec<(&str, Vec<String>, f64)> = vec![
        (
            "roster_rpc_requests_total",
            vec![method.clone(), "code=\"OK\"".into()],
            3.0,
        ),
        (
            "roster_rpc_requests_total",
            vec![method.clone(), "code=\"NOT_FOUND\"".into()],
            2.0,
        ),
        (
            "roster_rpc_requests_total",
            vec![
                "method=\"roster.v1.UserService/UpdateUsers\"".into(),
                "code=\"OK\"".into(),
            ],
            1.0,
        ),
        (
            "roster_rpc_duration_seconds_bucket",
            vec![method.clone(), "code=\"OK\"".into(), "le=\"+Inf\"".into()],
            3.0,
        ),
        (
            "roster_rpc_duration_seconds_bucket",
            vec![method.clone(), "code=\"OK\"".into(), "le=\"0.005\"".into()],
            0.0,
        ),
        (
            "roster_rpc_duration_seconds_count",
            vec![method.clone(), "code=\"NOT_FOUND\"".into()],
            2.0,
        ),
        (
            "roster_rpc_duration_seconds_sum",
            vec![method.clone(), "code=\"OK\"".into()],
            0.0,
        ),
        ("roster_task_queue_depth", vec![], 0.0),
        ("roster_task_oldest_pending_age_seconds", vec![], 0.0),
        ("roster_db_pool_connections_in_use", vec![], 0.0),
        ("roster_db_pool_connections", vec![], 1.0),
    ];
    // Gauges are sampled every few seconds: poll until everything is there.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let (code, text) = http_get(metrics_addr, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(code, 200, "GET /metrics: {text}");
        let missing: Vec<String> = checks
            .iter()
            .filter(|(name, labels, at_least)| {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                !sample(&text, name, &labels).is_some_and(|v| v >= *at_least)
            })
            .map(|(name, labels, at_least)| format!("{name}{labels:?} >= {at_least}"))
            .collect();
        if missing.is_empty() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "missing from /metrics after 15 s: {missing:?}\n{text}"
        );
        tokio::time::sleep(POLL * 10).await;
    };
    for family in [
        "# TYPE roster_rpc_requests_total counter",
        "# TYPE roster_rpc_duration_seconds histogram",
        "# TYPE roster_task_queue_depth gauge",
        "# TYPE roster_db_pool_connections gauge",
    ] {
        assert!(text.contains(family), "{family:?} in:\n{text}");
    }
    // Health calls are counted under their own method, never as GetUser.
    assert!(
        sample(
            &text,
            "roster_rpc_requests_total",
            &["method=\"grpc.health.v1.Health/Check\"", "code=\"OK\""]
        )
        .is_some(),
        "health checks counted:\n{text}"
    );

    let (code, _) = http_get(metrics_addr, "/other").await.expect("GET /other");
    assert_eq!(code, 404, "only /metrics is served");
}
