//! Authentication as Stream's SDKs send it: `?api_key=`, `Authorization: <JWT>` (no `Bearer`)
//! and `stream-auth-type: jwt`. Every refusal is a 401 with Stream's error body, and nothing is
//! written.
use super::*;

fn upsert_body(id: &str) -> Json {
    json!({"users": {id: {"id": id}}})
}

#[tokio::test]
async fn wrong_key_bad_signature_expired_or_missing_token_answer_401_and_write_nothing() {
    let (srv, client) = door().await;
    let anonymous = srv.http();

    let wrong_key = client.key(Some("another-app"));
    wrong_key
        .post("/api/v2/users", &upsert_body("k1"))
        .await
        .error(401, 5);
    client
        .key(None)
        .post("/api/v2/users", &upsert_body("k2"))
        .await
        .error(401, 5);

    let forged = anonymous.token(&token("not-the-secret", &json!({"service": "sdk"})));
    forged
        .post("/api/v2/users", &upsert_body("k3"))
        .await
        .error(401, 5);
    anonymous
        .token("not.a.jwt")
        .post("/api/v2/users", &upsert_body("k4"))
        .await
        .error(401, 5);
    anonymous
        .post("/api/v2/users", &upsert_body("k5"))
        .await
        .error(401, 5);

    let expired = token(SECRET, &json!({"service": "sdk", "exp": unix_now() - 3600}));
    let body = anonymous
        .token(&expired)
        .post("/api/v2/users", &upsert_body("k6"))
        .await
        .error(401, 40);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // A user token signed with the same secret (as Stream's SDKs make them) is no server token.
    let user_token = token(SECRET, &json!({"user_id": "k7"}));
    anonymous
        .token(&user_token)
        .post("/api/v2/users", &upsert_body("k7"))
        .await
        .error(401, 5);

    // Another authentication type than a server JWT is refused.
    let bytes = format!(
        "POST /api/v2/users?api_key={TEST_API_KEY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: {}\r\nstream-auth-type: anonymous\r\nContent-Length: 2\r\n\r\n{{}}",
        server_token("sdk")
    );
    raw_exchange(client.address(), bytes.into_bytes())
        .await
        .error(401, 5);

    assert_eq!(
        everyone(&client).await,
        Vec::<String>::new(),
        "nothing written"
    );
}

#[tokio::test]
async fn the_python_sdk_token_and_a_bearer_prefix_are_accepted_and_secrets_rotate() {
    let srv = Launch::new()
        .http()
        .api_secrets(&["new-secret", "old-secret"])
        .config(|c| c.api_key = Some(TEST_API_KEY.to_owned()))
        .start()
        .await;
    // The Python SDK signs `{}`; the Go SDK `{"server": true}`.
    let python = srv.http().token(&token("old-secret", &json!({})));
    python.post("/api/v2/users", &upsert_body("p1")).await.ok();
    let go = srv
        .http()
        .token(&token("new-secret", &json!({"server": true})));
    go.post("/api/v2/users", &upsert_body("g1")).await.ok();
    let bearer = srv
        .http()
        .token(&format!("Bearer {}", token("new-secret", &json!({}))));
    bearer.post("/api/v2/users", &upsert_body("b1")).await.ok();
    let mut ids = everyone(&python).await;
    ids.sort();
    assert_eq!(ids, ["b1", "g1", "p1"]);
}

#[tokio::test]
async fn a_token_without_the_scope_answers_403() {
    let (srv, client) = door().await;
    let reader = srv.http().token(&token(
        SECRET,
        &json!({"service": "reader", "scope": "users:read"}),
    ));
    let body = reader
        .post("/api/v2/users", &upsert_body("s1"))
        .await
        .error(403, 17);
    assert!(
        body["message"].as_str().unwrap().contains("users:write"),
        "{body}"
    );
    reader
        .query_users(&json!({"filter_conditions": {}}))
        .await
        .ok();
    assert_eq!(everyone(&client).await, Vec::<String>::new());
}

#[tokio::test]
async fn without_api_secrets_on_loopback_callers_need_no_token() {
    let srv = Launch::new().http().start().await;
    let client = srv.http().key(Some("any-key"));
    client
        .post("/api/v2/users", &upsert_body("open"))
        .await
        .ok();
    assert_eq!(everyone(&client).await, ["open"]);
}
