//! SPEC 13: Prometheus metrics at `GET /metrics`: per-RPC counters and latency histograms by
//! method and code, task queue and connection pool gauges.
//!
//! The recorder is process-wide and other tests run in this process at the same time, so counts
//! are checked as lower bounds.

use std::time::Duration;

use roster::pb::GetUserRequest;
use tokio::time::Instant;
use tonic::Code;

use crate::support::*;

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
    let server = Launch::new()
        .config(|config| config.metrics_listen = Some(metrics_addr))
        .start()
        .await;
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

/// The `method` labels of every `roster_rpc_` series on the page.
fn rpc_methods(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|line| line.starts_with("roster_rpc_"))
        .filter_map(|line| {
            let start = line.find("method=\"")? + "method=\"".len();
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        })
        .collect()
}

/// Requests for paths roster does not serve, unauthenticated, add no series: labels come only
/// from roster's own RPC names, and such requests are one counter without a label.
#[tokio::test]
async fn a_thousand_invented_paths_add_no_series() {
    let metrics_addr = free_loopback_addr();
    let server = Launch::new()
        .config(|config| {
            config.metrics_listen = Some(metrics_addr);
            config.api_secrets = vec!["metrics-test-secret".into()];
        })
        .start()
        .await;
    let page = || async {
        let (code, text) = http_get(metrics_addr, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(code, 200, "GET /metrics: {text}");
        text
    };
    let before = page().await;
    let unrouted_before = sample(&before, "roster_rpc_unrouted_total", &[]).unwrap_or(0.0);

    let mut grpc = tonic::client::Grpc::new(server.channel());
    let mut invented = Vec::new();
    for i in 0..1000u64 {
        let n = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let path = match i % 3 {
            0 => format!("/roster.v1.UserService/Get{n:x}"),
            1 => format!("/pkg{n:x}.Service/Method"),
            _ => format!("/{n:x}"),
        };
        grpc.ready().await.expect("channel ready");
        let status = grpc
            .unary(
                tonic::Request::new(()),
                http::uri::PathAndQuery::try_from(path.clone()).expect("a path"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .expect_err("no such RPC, and no token");
        assert!(
            matches!(status.code(), Code::Unauthenticated | Code::Unimplemented),
            "{path}: {status:?}"
        );
        invented.push(path);
    }

    let after = page().await;
    for path in &invented {
        let name = path.trim_start_matches('/');
        assert!(!after.contains(name), "{path} became a label:\n{after}");
    }
    let known: std::collections::BTreeSet<String> = rpc_methods(&before)
        .into_iter()
        .chain(rpc_methods(&after))
        .filter(|m| m.starts_with("roster.v1.") || m.starts_with("grpc."))
        .collect();
    assert_eq!(
        rpc_methods(&after).difference(&known).count(),
        0,
        "every method label names a real RPC"
    );
    let unrouted = sample(&after, "roster_rpc_unrouted_total", &[]).unwrap_or(0.0);
    assert!(
        unrouted >= unrouted_before + 1000.0,
        "the 1000 requests are counted without a label: {unrouted_before} -> {unrouted}"
    );
}

/// `/metrics` is served by a real HTTP implementation: a request that arrives in pieces is still
/// answered, and other paths are 404.
#[tokio::test]
async fn a_request_split_across_packets_is_answered_and_other_paths_are_not_found() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let metrics_addr = free_loopback_addr();
    let _server = Launch::new()
        .config(move |config| config.metrics_listen = Some(metrics_addr))
        .start()
        .await;

    let mut socket = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    socket.write_all(b"GET /met").await.expect("first piece");
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket
        .write_all(b"rics HTTP/1.1\r\nHost: roster\r\n")
        .await
        .expect("second piece");
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket
        .write_all(b"Connection: close\r\n\r\n")
        .await
        .expect("last piece");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response))
        .await
        .expect("answered within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text:.300}");

    let (code, _) = http_get(metrics_addr, "/other").await.expect("GET /other");
    assert_eq!(code, 404);
}
