//! The scenarios, sent to roster's Stream-compatible HTTP door: the same work as `scenarios`
//! sends over gRPC, as JSON over HTTP/1.1 on keep-alive connections. Stream's API has no GetUser:
//! a get is a QueryUsers by id, as the SDKs do it. Every answer is checked for its status and its
//! shape (the users asked for, a full page), so that a quick error cannot pass for a quick answer.
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::data::Population;
use crate::load::{Measured, closed_loop, scatter};
use crate::scenarios::{QUERY_LIMIT, QUERY_SORT, query_filter};

/// One HTTP/1.1 client shared by the workers; its pool keeps a connection per worker alive.
#[derive(Clone)]
pub struct HttpDoor {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port/api/v2/users`: every call of the bench goes there.
    users_url: Arc<str>,
}

impl HttpDoor {
    /// A client for the door at `addr` (`host:port`), for `concurrency` workers. Like the gRPC
    /// connections, one is made for each scenario.
    pub fn new(addr: &str, concurrency: usize) -> HttpDoor {
        let mut connector = HttpConnector::new();
        // As on the gRPC channels: a request is headers then body, two small writes.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(concurrency.max(1))
            .build(connector);
        HttpDoor {
            client,
            users_url: format!("http://{addr}/api/v2/users").into(),
        }
    }

    /// Sends one request; the answer's body, if its status is `expected`.
    async fn call(
        &self,
        what: &str,
        request: Request<Full<Bytes>>,
        expected: &[StatusCode],
    ) -> anyhow::Result<Bytes> {
        let response = self
            .client
            .request(request)
            .await
            .context(what.to_owned())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{what}: reading the answer"))?
            .to_bytes();
        if !expected.contains(&status) {
            let text = String::from_utf8_lossy(&body);
            bail!(
                "{what} answered {status}: {}",
                text.get(..500).unwrap_or(&text)
            );
        }
        Ok(body)
    }

    fn json_request(&self, method: Method, body: &Value) -> anyhow::Result<Request<Full<Bytes>>> {
        Ok(Request::builder()
            .method(method)
            .uri(&*self.users_url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?)
    }

    /// GET /api/v2/users?payload=<`payload` as URL-encoded JSON>.
    fn query_request(&self, payload: &Value) -> anyhow::Result<Request<Full<Bytes>>> {
        let payload = serde_json::to_string(payload)?;
        let encoded: String = form_urlencoded::byte_serialize(payload.as_bytes()).collect();
        Ok(Request::builder()
            .method(Method::GET)
            .uri(format!("{}?payload={encoded}", self.users_url))
            .body(Full::new(Bytes::new()))?)
    }
}

/// A user in an answer: what the checks look at (the rest of it is skipped unread).
#[derive(Deserialize)]
struct SeenUser {
    id: String,
    #[serde(default)]
    custom: SeenCustom,
}

#[derive(Deserialize, Default)]
struct SeenCustom {
    /// A number however it was written (a user upserted over gRPC came as a protobuf double).
    score: Option<f64>,
}

/// The answer of upsert and partial update: `{users: {id: user}}`.
#[derive(Deserialize)]
struct UsersById {
    users: HashMap<String, SeenUser>,
}

/// The answer of QueryUsers: `{users: [user]}`.
#[derive(Deserialize)]
struct UserList {
    users: Vec<SeenUser>,
}

/// What roster answers an upsert with; Stream answers 201.
const UPSERTED: [StatusCode; 2] = [StatusCode::OK, StatusCode::CREATED];

/// POST /api/v2/users: request `i` creates users `first + 100 i ..` (100 of them); the answer
/// must hold each of them.
pub async fn upsert(
    door: &HttpDoor,
    population: &Population,
    first: u64,
    users: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let door = door.clone();
    let population = population.clone();
    closed_loop(concurrency, users / 100, move |i| {
        let door = door.clone();
        let start = first + i * 100;
        let batch: Map<String, Value> = (start..start + 100)
            .map(|n| (population.id(n), population.stream_user(n)))
            .collect();
        let ids: Vec<String> = batch.keys().cloned().collect();
        let request = door.json_request(Method::POST, &json!({ "users": batch }));
        async move {
            let body = door.call("UpdateUsers", request?, &UPSERTED).await?;
            let answer: UsersById =
                serde_json::from_slice(&body).context("UpdateUsers: the answer")?;
            ensure!(
                answer.users.len() == ids.len()
                    && ids
                        .iter()
                        .all(|id| answer.users.get(id).is_some_and(|u| &u.id == id)),
                "UpdateUsers answered {} users, not the {} it was sent",
                answer.users.len(),
                ids.len()
            );
            Ok(())
        }
    })
    .await
}

/// PATCH /api/v2/users: the custom key `score` of one user per request; the answer must hold
/// that user with the new score.
pub async fn partial(
    door: &HttpDoor,
    population: &Population,
    users: u64,
    updates: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let door = door.clone();
    let population = population.clone();
    closed_loop(concurrency, updates, move |i| {
        let door = door.clone();
        let id = population.id(scatter(i, users));
        let score = i % 1000;
        let request = door.json_request(
            Method::PATCH,
            &json!({ "users": [{ "id": id, "set": { "score": score } }] }),
        );
        async move {
            let body = door
                .call("UpdateUsersPartial", request?, &[StatusCode::OK])
                .await?;
            let answer: UsersById =
                serde_json::from_slice(&body).context("UpdateUsersPartial: the answer")?;
            let seen = answer.users.get(&id).map(|u| u.custom.score);
            ensure!(
                answer.users.len() == 1 && seen == Some(Some(score as f64)),
                "UpdateUsersPartial of {id} to score {score} answered {} users, its score {seen:?}",
                answer.users.len()
            );
            Ok(())
        }
    })
    .await
}

/// GET /api/v2/users with `{"id": {"$in": [id]}}`, one user per request: the SDKs' GetUser.
/// The answer must be that user.
pub async fn get(
    door: &HttpDoor,
    population: &Population,
    users: u64,
    reads: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let door = door.clone();
    let population = population.clone();
    closed_loop(concurrency, reads, move |i| {
        let door = door.clone();
        let id = population.id(scatter(i, users));
        let request =
            door.query_request(&json!({ "filter_conditions": { "id": { "$in": [&id] } } }));
        async move {
            let body = door
                .call("QueryUsers by id", request?, &[StatusCode::OK])
                .await?;
            let answer: UserList =
                serde_json::from_slice(&body).context("QueryUsers by id: the answer")?;
            ensure!(
                answer.users.len() == 1 && answer.users[0].id == id,
                "QueryUsers of {id} answered {} users",
                answer.users.len()
            );
            Ok(())
        }
    })
    .await
}

/// GET /api/v2/users: the gRPC `query`'s filter, sort and limit. Every answer must be a full
/// page.
pub async fn query(door: &HttpDoor, queries: u64, concurrency: usize) -> anyhow::Result<Measured> {
    let door = door.clone();
    let payload = json!({
        "filter_conditions": query_filter(),
        "sort": [{ "field": QUERY_SORT.0, "direction": QUERY_SORT.1 }],
        "limit": QUERY_LIMIT,
    });
    closed_loop(concurrency, queries, move |_| {
        let door = door.clone();
        let request = door.query_request(&payload);
        async move {
            let body = door.call("QueryUsers", request?, &[StatusCode::OK]).await?;
            let answer: UserList =
                serde_json::from_slice(&body).context("QueryUsers: the answer")?;
            if answer.users.len() != QUERY_LIMIT as usize {
                bail!(
                    "QueryUsers returned {} users, expected a full page of {QUERY_LIMIT}",
                    answer.users.len()
                );
            }
            Ok(())
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in door that answers every request with `status` and `body`.
    async fn stub(status: StatusCode, body: impl Into<String>) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let body: String = body.into();
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move { (status, body) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    async fn get_once(addr: &str) -> anyhow::Result<Measured> {
        get(&HttpDoor::new(addr, 1), &Population::new(), 10, 1, 1).await
    }

    #[tokio::test]
    async fn an_error_status_fails_the_run() -> anyhow::Result<()> {
        let addr = stub(StatusCode::UNAUTHORIZED, r#"{"code": 5}"#).await?;
        let err = get_once(&addr).await.err().map(|e| format!("{e:#}"));
        assert!(err.as_deref().is_some_and(|e| e.contains("401")), "{err:?}");
        Ok(())
    }

    #[tokio::test]
    async fn an_answer_without_the_user_fails_the_run() -> anyhow::Result<()> {
        let addr = stub(StatusCode::OK, r#"{"users": [], "duration": "0.10ms"}"#).await?;
        assert!(get_once(&addr).await.is_err());
        let addr = stub(StatusCode::OK, r#"{"users": {}, "duration": "0.10ms"}"#).await?;
        let partial = partial(&HttpDoor::new(&addr, 1), &Population::new(), 10, 1, 1).await;
        assert!(partial.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn the_users_asked_for_pass() -> anyhow::Result<()> {
        let population = Population::new();
        let body = format!(
            r#"{{"users": [{{"id": "{}", "custom": {{}}}}]}}"#,
            population.id(0)
        );
        let addr = stub(StatusCode::OK, body).await?;
        let measured = get(&HttpDoor::new(&addr, 1), &population, 1, 3, 1).await?;
        assert_eq!(measured.requests, 3);
        Ok(())
    }
}
