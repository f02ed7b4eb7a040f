//! Load shedding: calls past `max_concurrent_requests` are refused at once with
//! RESOURCE_EXHAUSTED instead of queueing; the others succeed, nothing hangs, and refused calls
//! have no effect.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use roster::pb::{GetUserRequest, UpdateUsersRequest};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::*;

const CALLS: usize = 50;
const USERS_PER_CALL: usize = 100;
const ROUNDS: usize = 5;

fn batch(round: usize, call: usize) -> UpdateUsersRequest {
    let users = (0..USERS_PER_CALL)
        .map(|i| {
            let id = format!("r{round}-c{call:02}-u{i:03}");
            let request = user(&id).with_name(&format!("User {i}"));
            (id, request)
        })
        .collect();
    UpdateUsersRequest { users }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_past_the_concurrency_limit_get_resource_exhausted_and_never_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let db = Arc::new(TestDb::create().await);
    let mut server = Launch::new()
        .on(db)
        .listener(listener)
        .config(|config| config.max_concurrent_requests = 1)
        .spawn()
        .await;
    let channel = plain_channel(server.address());
    server.wait_serving(&channel).await;
    // Several connections, so that the calls really run at once.
    let channels: Vec<Channel> = (0..4).map(|_| plain_channel(server.address())).collect();

    let (mut ok, mut exhausted) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut calls = JoinSet::new();
        for call in 0..CALLS {
            let channel = channels[call % channels.len()].clone();
            calls.spawn(async move {
                let outcome = users_client(&channel)
                    .update_users(batch(round, call))
                    .await;
                (call, outcome.map(|_| ()))
            });
        }
        let results = tokio::time::timeout(Duration::from_secs(20), calls.join_all())
            .await
            .expect("every call returns within 20 s: none hangs");
        for (call, outcome) in results {
            match outcome {
                Ok(()) => ok.push((round, call)),
                Err(status) if status.code() == Code::ResourceExhausted => {
                    exhausted.push((round, call));
                }
                Err(status) => panic!("call {call} of round {round}: unexpected {status:?}"),
            }
        }
        if !ok.is_empty() && !exhausted.is_empty() {
            break;
        }
    }
    assert!(
        !exhausted.is_empty(),
        "no call was shed in {ROUNDS} rounds of {CALLS}"
    );
    assert!(!ok.is_empty(), "no call succeeded");
    eprintln!(
        "{} calls succeeded, {} were shed",
        ok.len(),
        exhausted.len()
    );

    // Refused calls did nothing; accepted ones did everything. (One user per call is enough.)
    let mut users = users_client(&channel);
    for (round, call) in ok.iter().chain(&exhausted) {
        let id = format!("r{round}-c{call:02}-u000");
        let found = users
            .get_user(GetUserRequest {
                id: id.clone(),
                include_deleted: false,
            })
            .await;
        let accepted = ok.contains(&(*round, *call));
        match found {
            Ok(_) => assert!(accepted, "{id} exists although its call was shed"),
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                assert!(!accepted, "{id} missing although its call succeeded");
            }
        }
    }

    // No permit leaked: sequential calls all get through, and health is never shed.
    for i in 0..5 {
        users
            .update_users(batch(99, i))
            .await
            .expect("a lone call after the burst");
    }
    assert_eq!(health_status(&channel).await, Ok(ServingStatus::Serving));
    server.stop().await.expect("run returns Ok");
}
