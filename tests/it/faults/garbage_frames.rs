//! Garbage on the gRPC port: random bytes, an HTTP/2 preface followed by junk, connections that
//! stall half-way, a length prefix claiming ~2 GiB and a real message over the size limit.
//!
//! Each bad connection is closed or reset by the server (or each bad call answered with a
//! precise status), and a well-behaved client on its own connection is served the whole time:
//! health checks and reads run alongside and must all succeed, during and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roster::pb::QueryUsersRequest;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;
use tower::ServiceExt;

use crate::support::*;

/// How long the server may take to drop a connection it cannot make sense of.
const CLOSE_DEADLINE: Duration = Duration::from_secs(20);
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Deterministic noise (xorshift64*), so a failure can be replayed.
struct Noise(u64);

impl Noise {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }
}

/// A well-behaved client on its own connection, checking health and reading a user in a loop.
struct Bystander {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    task: JoinHandle<Vec<String>>,
}

impl Bystander {
    fn start(srv: &Server) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let channel = own_channel(srv);
        let task = tokio::spawn({
            let stop = stop.clone();
            let served = served.clone();
            async move {
                let mut failures = Vec::new();
                let mut health = HealthClient::new(channel.clone());
                let mut users = roster::pb::user_service_client::UserServiceClient::new(channel);
                while !stop.load(Ordering::Relaxed) {
                    match health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => {}
                        other => failures.push(format!("health: {other:?}")),
                    }
                    let get = users
                        .get_user(roster::pb::GetUserRequest {
                            id: "alice".into(),
                            include_deleted: false,
                        })
                        .await;
                    match get {
                        Ok(r) if r.get_ref().user.as_ref().is_some_and(|u| u.id == "alice") => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("GetUser: {other:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                failures
            }
        });
        Bystander { stop, served, task }
    }

    /// Stops the loop; every call it made succeeded, and it made some after `since` calls.
    async fn finish(self, since: usize) {
        // Let a few more rounds run after the garbage, then stop.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.served.load(Ordering::Relaxed) < since + 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bystander was not served after the garbage"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.expect("bystander task");
        assert!(
            failures.is_empty(),
            "the bystander was refused: {failures:?}"
        );
    }
}

/// A channel of its own (its own TCP connection), not the launcher's shared one.
fn own_channel(srv: &Server) -> Channel {
    Endpoint::from_shared(format!("http://{}", addr(srv)))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

fn addr(srv: &Server) -> String {
    // The launcher's channel was built for `http://<addr>`; the server listens there.
    srv.address().to_string()
}

async fn started() -> (Server, Bystander) {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("alice").with_name("Alice")]).await;
    let bystander = Bystander::start(&srv);
    (srv, bystander)
}

/// Sends `bytes` on a fresh connection, then reads until the server closes or resets it.
/// Gives what the server sent.
async fn send_and_wait_for_close(srv: &Server, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr(srv)).await.expect("connect");
    // The server may close while the bytes are still going out; that is a fine answer.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(CLOSE_DEADLINE, read)
        .await
        .expect("the server did not close the garbage connection");
    received
}

/// HTTP/2 frames in `bytes` as `(type, payload)`; stops at the first incomplete frame.
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + len {
            break;
        }
        out.push((rest[3], rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    out
}

const GOAWAY: u8 = 0x7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_dropped_and_others_are_served() {
    let (srv, bystander) = started().await;
    let before = bystander.served.load(Ordering::Relaxed);
    let mut noise = Noise(0x5eed_0001);
    for len in [1, 24, 512, 64 * 1024] {
        let garbage = noise.bytes(len);
        let received = send_and_wait_for_close(&srv, &garbage).await;
        // Whatever the server said before closing, it was HTTP/2 framing, not an echo.
        assert!(
            !received
                .windows(len.min(24))
                .any(|w| w == &garbage[..len.min(24)]),
            "the server echoed garbage"
        );
    }
    bystander.finish(before).await;
    srv.get_ok("alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_after_the_http2_preface_ends_in_goaway() {
    let (srv, bystander) = started().await;
    let before = bystander.served.load(Ordering::Relaxed);
    let mut noise = Noise(0x5eed_0002);
    for len in [9, 100, 16 * 1024] {
        let mut bytes = HTTP2_PREFACE.to_vec();
        bytes.extend(noise.bytes(len));
        let received = send_and_wait_for_close(&srv, &bytes).await;
        let kinds: Vec<u8> = frames(&received).iter().map(|(kind, _)| *kind).collect();
        assert!(
            kinds.contains(&GOAWAY) || received.is_empty(),
            "expected a GOAWAY before the close, got frames {kinds:?}"
        );
    }
    // A frame header announcing a 16 MiB frame (over the default max frame size).
    let mut oversized = HTTP2_PREFACE.to_vec();
    oversized.extend([0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]); // empty SETTINGS
    oversized.extend([0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]); // 16 MiB DATA
    oversized.extend(noise.bytes(1024));
    let received = send_and_wait_for_close(&srv, &oversized).await;
    let goaway = frames(&received)
        .into_iter()
        .find(|(kind, _)| *kind == GOAWAY)
        .expect("a GOAWAY for the oversized frame");
    // GOAWAY payload: last stream id (4 bytes), then the error code (4 bytes).
    let code = u32::from_be_bytes([goaway.1[4], goaway.1[5], goaway.1[6], goaway.1[7]]);
    assert_ne!(code, 0, "an oversized frame is an error, not NO_ERROR");
    bystander.finish(before).await;
    srv.get_ok("alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_do_not_block_others() {
    let (srv, bystander) = started().await;
    let before = bystander.served.load(Ordering::Relaxed);
    // Half a preface, a preface and nothing, a preface and half a frame header: held open.
    let mut stalled = Vec::new();
    for i in 0..60 {
        let mut stream = TcpStream::connect(addr(&srv)).await.expect("connect");
        let bytes: &[u8] = match i % 3 {
            0 => &HTTP2_PREFACE[..10],
            1 => HTTP2_PREFACE,
            _ => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
        };
        stream.write_all(bytes).await.expect("write");
        stalled.push(stream);
    }
    // Served while they are all open.
    let during = bystander.served.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bystander.served.load(Ordering::Relaxed) < during + 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "others are not served while connections stall"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stalled);
    bystander.finish(before).await;
}

/// A gRPC request whose body is exactly `body` (length prefix included), on its own connection.
/// Gives the status of the answer, which must be trailers-only (an error decided before any
/// response message).
async fn raw_call(srv: &Server, path: &str, body: Vec<u8>) -> Result<tonic::Status, String> {
    // Every byte of these bodies is below 0x80, so they are valid UTF-8 and a `String` body.
    let body = String::from_utf8(body).map_err(|e| format!("test body must be ASCII: {e}"))?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", addr(srv)))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(body))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(CLOSE_DEADLINE, own_channel(srv).oneshot(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("transport error: {e}"))?;
    tonic::Status::from_header_map(response.headers())
        .ok_or_else(|| format!("no grpc-status in the headers: {:?}", response.headers()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_prefix_claiming_two_gib_is_refused_at_once() {
    let (srv, bystander) = started().await;
    let before = bystander.served.load(Ordering::Relaxed);
    // Uncompressed, length 0x7f7f7f7f (~2 GiB), followed by a few bytes and the end of stream.
    let mut body = vec![0x00, 0x7f, 0x7f, 0x7f, 0x7f];
    body.extend_from_slice(b"\x0a\x00");
    for path in [
        "/roster.v1.UserService/QueryUsers",
        "/roster.v1.UserService/UpdateUsers",
        "/grpc.health.v1.Health/Check",
    ] {
        let status = raw_call(&srv, path, body.clone())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{path}: a message over the size limit: {status:?}"
        );
    }
    assert_eq!(srv.all_ids().await, ["alice"], "nothing was written");
    bystander.finish(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_in_a_valid_frame_is_invalid_argument() {
    let (srv, bystander) = started().await;
    let before = bystander.served.load(Ordering::Relaxed);
    let mut noise = Noise(0x5eed_0003);
    // Lengths whose prefix bytes are ASCII, like the payload (see `raw_call`).
    for len in [1usize, 7, 300, 3967] {
        let payload: Vec<u8> = noise.bytes(len).into_iter().map(|b| b & 0x7f).collect();
        let mut body = vec![0x00];
        body.extend((len as u32).to_be_bytes());
        body.extend(payload);
        let status = raw_call(&srv, "/roster.v1.UserService/UpdateUsers", body)
            .await
            .expect("an answer");
        // Random bytes may happen to decode as a (meaningless) request: then the request is
        // judged on its content, which garbage never satisfies. Either way: a field violation.
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "garbage protobuf: {status:?}"
        );
        let violations = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("no BadRequest: {status:?}"))
            .field_violations;
        assert!(
            !violations.is_empty() && violations.iter().all(|v| !v.field.is_empty()),
            "every violation names a field: {violations:?}"
        );
    }
    assert_eq!(srv.all_ids().await, ["alice"], "nothing was written");
    bystander.finish(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let (srv, bystander) = started().await;
    let before = bystander.served.load(Ordering::Relaxed);
    // The default limit is 4 MiB: a 5 MiB filter value.
    let mut users = roster::pb::user_service_client::UserServiceClient::new(own_channel(&srv));
    let status = users
        .query_users(filter_query(json!({ "name": "n".repeat(5 * 1024 * 1024) })))
        .await
        .expect_err("a 5 MiB request is refused");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "a message over the size limit: {status:?}"
    );
    // The same connection still works for a normal call.
    let page = users
        .query_users(QueryUsersRequest {
            limit: 10,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("a normal call on the same connection");
    assert_eq!(ids(&page.into_inner().users), ["alice"]);
    bystander.finish(before).await;
}
