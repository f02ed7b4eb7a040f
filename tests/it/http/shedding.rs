//! Load shedding at the HTTP door: past `max_concurrent_requests` (the budget both doors share)
//! a request is refused at once with 429 and Stream's error body (code 9) instead of queueing;
//! nothing hangs, a refused request writes nothing, and no permit leaks.

use std::collections::BTreeSet;

use tokio::task::JoinSet;

use super::*;

const CALLS: usize = 40;
const USERS_PER_CALL: usize = 100;
const ROUNDS: usize = 5;

fn batch(round: usize, call: usize) -> Json {
    let users: serde_json::Map<String, Json> = (0..USERS_PER_CALL)
        .map(|i| {
            let id = format!("h{round}-c{call:02}-u{i:03}");
            (id.clone(), json!({"id": id, "name": format!("User {i}")}))
        })
        .collect();
    json!({ "users": users })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_past_the_shared_concurrency_limit_get_429_and_write_nothing() {
    let srv = Launch::new()
        .http()
        .config(|c| c.max_concurrent_requests = 1)
        .start()
        .await;
    let client = srv.http();

    let (mut ok, mut shed) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut calls = JoinSet::new();
        for call in 0..CALLS {
            let client = client.clone();
            calls.spawn(async move {
                let answer = client.post("/api/v2/users", &batch(round, call)).await;
                (call, answer)
            });
        }
        let answers = tokio::time::timeout(Duration::from_secs(20), calls.join_all())
            .await
            .expect("every request is answered within 20 s: none hangs");
        for (call, answer) in answers {
            match answer.status {
                200 => {
                    let body = answer.ok();
                    assert_eq!(body["users"].as_object().map(|u| u.len()), Some(100));
                    ok.push((round, call));
                }
                429 => {
                    let body = answer.error(429, 9);
                    assert!(
                        body["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("concurrency limit")),
                        "{body}"
                    );
                    shed.push((round, call));
                }
                other => panic!("request {call} of round {round}: {other} {}", answer.text),
            }
        }
        if !ok.is_empty() && !shed.is_empty() {
            break;
        }
    }
    assert!(
        !shed.is_empty(),
        "no request was shed in {ROUNDS} rounds of {CALLS}"
    );
    assert!(!ok.is_empty(), "no request succeeded");
    eprintln!("{} requests succeeded, {} were shed", ok.len(), shed.len());

    // Refused requests wrote nothing; accepted ones wrote all their users.
    let stored: BTreeSet<String> = srv.all_ids().await.into_iter().collect();
    for (round, call) in &ok {
        for i in 0..USERS_PER_CALL {
            let id = format!("h{round}-c{call:02}-u{i:03}");
            assert!(
                stored.contains(&id),
                "{id} missing although its request succeeded"
            );
        }
    }
    for (round, call) in &shed {
        let prefix = format!("h{round}-c{call:02}-");
        assert!(
            !stored.iter().any(|id| id.starts_with(&prefix)),
            "users of shed request {call} of round {round} were written"
        );
    }
    assert_eq!(stored.len(), ok.len() * USERS_PER_CALL);

    // No permit leaked: lone requests get through, through either door.
    for i in 0..3 {
        client.post("/api/v2/users", &batch(99, i)).await.ok();
        srv.upsert_ok([user(&format!("grpc-after-{i}"))]).await;
    }
    srv.stop().await.expect("roster stops cleanly");
}
