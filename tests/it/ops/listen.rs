//! SPEC 12: without an API secret roster serves only on loopback; `run` refuses another address
//! unless told it is insecure (or given secrets).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster::pb::GetUserRequest;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::Code;

use crate::support::*;

async fn bind_every_interface() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind 0.0.0.0:0");
    let port = listener.local_addr().expect("listener address").port();
    (listener, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test]
async fn run_refuses_a_non_loopback_listener_without_secrets() {
    let db = Arc::new(TestDb::create().await);
    let (listener, _) = bind_every_interface().await;
    let server = Launch::new().on(db).listener(listener).spawn().await;
    let outcome = server
        .returned(Duration::from_secs(10))
        .await
        .expect("run returns at once instead of serving");
    let message = outcome.expect_err("run must refuse 0.0.0.0 without secrets");
    assert!(
        message.contains("without API secrets") && message.contains("insecure"),
        "the error says why and what to do: {message}"
    );
}

#[tokio::test]
async fn run_serves_a_non_loopback_listener_when_insecure() {
    let db = Arc::new(TestDb::create().await);
    let (listener, loopback) = bind_every_interface().await;
    let mut server = Launch::new()
        .on(db)
        .listener(listener)
        .config(|config| config.insecure = true)
        .spawn()
        .await;
    let channel = plain_channel(loopback);
    server.wait_serving(&channel).await;
    // Unauthenticated calls work: nothing to check a token against.
    let status = users_client(&channel)
        .get_user(GetUserRequest {
            id: "nobody".to_owned(),
            include_deleted: false,
        })
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    server.stop().await.expect("run returns Ok after shutdown");
}

#[tokio::test]
async fn run_serves_a_non_loopback_listener_with_secrets() {
    let db = Arc::new(TestDb::create().await);
    let (listener, loopback) = bind_every_interface().await;
    let mut server = Launch::new()
        .on(db)
        .listener(listener)
        .api_secrets(&["s3cret"])
        .spawn()
        .await;
    let channel = plain_channel(loopback);
    server.wait_serving(&channel).await;
    let request = || GetUserRequest {
        id: "nobody".to_owned(),
        include_deleted: false,
    };
    let status = users_client(&channel)
        .get_user(request())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = users_client(&channel)
        .get_user(bearer(
            request(),
            &token("s3cret", &json!({"service": "t"})),
        ))
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    server.stop().await.expect("run returns Ok after shutdown");
}

#[test]
fn without_secrets_every_interface_is_narrowed_to_loopback() {
    let public = SocketAddr::from(([0, 0, 0, 0], 50051));
    let config = roster::Config {
        listen: public,
        ..roster::Config::default()
    };
    assert_eq!(
        config.effective_listen(),
        SocketAddr::from(([127, 0, 0, 1], 50051))
    );
    let insecure = roster::Config {
        insecure: true,
        ..config.clone()
    };
    assert_eq!(insecure.effective_listen(), public);
    let with_secrets = roster::Config {
        api_secrets: vec!["s".into()],
        ..config
    };
    assert_eq!(with_secrets.effective_listen(), public);
}
