//! The Stream-compatible HTTP door, over raw HTTP/1.1: error bodies, authentication as the SDKs
//! send it, hostile input, the shape of every endpoint, and "one truth" with the gRPC door.
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::support::*;

mod auth;
mod binary;
mod hostile;
mod lifecycle;
mod moderation;
mod one_truth;
mod shedding;
mod users;

/// The API secret the door's tests sign server tokens with.
const SECRET: &str = "http-door-test-secret";

/// A server token naming calling service `service`.
fn server_token(service: &str) -> String {
    token(SECRET, &json!({ "service": service }))
}

/// A server requiring server tokens and the test API key, serving the HTTP door; and a client
/// of it authenticated as service `sdk`.
async fn door() -> (Server, HttpClient) {
    let srv = Launch::new()
        .http()
        .api_secrets(&[SECRET])
        .config(|c| c.api_key = Some(TEST_API_KEY.to_owned()))
        .start()
        .await;
    let client = srv.http().token(&server_token("sdk"));
    (srv, client)
}

/// Polls `GET /api/v2/tasks/{id}` until the task finishes; its last answer.
async fn finished_task(client: &HttpClient, task_id: &str) -> Json {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let task = client.get(&format!("/api/v2/tasks/{task_id}")).await.ok();
        let status = task["status"].as_str().unwrap_or_default().to_owned();
        if ["completed", "failed", "canceled"].contains(&status.as_str()) {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} still {status} after 30 s"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The ids of the users a query answer holds, in order.
fn user_ids(answer: &Json) -> Vec<String> {
    answer["users"]
        .as_array()
        .expect("users is a list")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every user, deactivated ones included, through the door.
async fn everyone(client: &HttpClient) -> Vec<String> {
    let answer = client
        .query_users(
            &json!({"filter_conditions": {}, "include_deactivated_users": true, "limit": 100}),
        )
        .await
        .ok();
    user_ids(&answer)
}
