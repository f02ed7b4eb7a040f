//! Hostile and malformed input: each answers a documented error body and writes nothing.
use super::*;

#[tokio::test]
async fn malformed_payloads_wrong_types_and_unknown_fields_answer_400_and_write_nothing() {
    let (_srv, client) = door().await;

    // `payload` that is not JSON, not an object, or has keys of the wrong type.
    let body = client
        .get("/api/v2/users?payload=%7Bnot-json")
        .await
        .error(400, 4);
    assert!(body["exception_fields"]["payload"].is_string(), "{body}");
    client
        .get("/api/v2/users?payload=%5B1%2C2%5D")
        .await
        .error(400, 4);
    let body = client
        .query_users(&json!({"filter_conditions": {}, "limit": "ten"}))
        .await
        .error(400, 4);
    assert!(
        body["exception_fields"]["payload.limit"].is_string(),
        "the field is named: {body}"
    );
    client
        .query_users(&json!({"filter_conditions": {}, "limit": -1}))
        .await
        .error(400, 4);
    client
        .query_users(&json!({"filter_conditions": {"name": {"$regex": "x"}}}))
        .await
        .error(400, 4);
    client
        .query_users(&json!({"filter_conditions": {}, "nonsense": 1}))
        .await
        .error(400, 4);

    // Bodies: not JSON, trailing garbage, unknown fields, wrong types, wrong shapes.
    for body in [
        "{".to_owned(),
        "{\"users\": {}} trailing".to_owned(),
        json!({"users": {"u1": {"id": "u1", "nmae": "typo"}}}).to_string(),
        json!({"users": {"u1": {"id": "u1"}}, "extra": true}).to_string(),
        json!({"users": {"u1": {"id": "u1", "teams": "red"}}}).to_string(),
        json!({"users": {"u1": {"id": 1}}}).to_string(),
        json!({"users": [{"id": "u1"}]}).to_string(),
        json!({"users": {"u1": {"id": "u1", "custom": [1]}}}).to_string(),
        "[]".to_owned(),
    ] {
        client
            .send("POST", "/api/v2/users", Some(body.as_bytes()))
            .await
            .error(400, 4);
    }
    client
        .patch(
            "/api/v2/users",
            &json!({"users": [{"id": "u1", "set": "name"}]}),
        )
        .await
        .error(400, 4);
    client
        .post("/api/v2/users/deactivate", &json!({"user_ids": "u1"}))
        .await
        .error(400, 4);
    client
        .post(
            "/api/v2/users/delete",
            &json!({"user_ids": ["u1"], "user": "obliterate"}),
        )
        .await
        .error(400, 4);

    assert_eq!(
        everyone(&client).await,
        Vec::<String>::new(),
        "nothing written"
    );
}

#[tokio::test]
async fn an_invalid_user_fails_the_whole_batch_and_batches_are_capped() {
    let (_srv, client) = door().await;
    let body = client
        .post(
            "/api/v2/users",
            &json!({"users": {"fine": {"id": "fine"}, "bad id": {"id": "bad id"}}}),
        )
        .await
        .error(400, 4);
    assert!(
        body["exception_fields"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("bad id")),
        "the bad user is named: {body}"
    );
    let too_many: serde_json::Map<String, Json> = (0..101)
        .map(|i| (format!("u{i}"), json!({"id": format!("u{i}")})))
        .collect();
    client
        .post("/api/v2/users", &json!({"users": too_many}))
        .await
        .error(400, 4);
    client
        .post("/api/v2/users", &json!({"users": {}}))
        .await
        .error(400, 4);
    client
        .post("/api/v2/users", &json!({"users": {"a": {"id": "b"}}}))
        .await
        .error(400, 4);
    assert_eq!(
        everyone(&client).await,
        Vec::<String>::new(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_10_mb_body_is_refused_with_413_and_writes_nothing() {
    let (_srv, client) = door().await;
    let big = "x".repeat(10 * 1024 * 1024);
    let body = json!({"users": {"big": {"id": "big", "custom": {"blob": big}}}}).to_string();
    let body = client
        .send("POST", "/api/v2/users", Some(body.as_bytes()))
        .await
        .error(413, 4);
    assert!(
        body["message"].as_str().unwrap().contains("larger than"),
        "{body}"
    );

    // Without a declared length (chunked), the limit holds as the body is read.
    let chunk = "y".repeat(1024 * 1024);
    let mut raw = format!(
        "POST /api/v2/users?api_key={TEST_API_KEY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: {}\r\nstream-auth-type: jwt\r\nTransfer-Encoding: chunked\r\n\r\n",
        server_token("sdk")
    )
    .into_bytes();
    let opening = "{\"users\": {\"big\": {\"id\": \"big\", \"custom\": {\"blob\": \"";
    raw.extend_from_slice(format!("{:x}\r\n{opening}\r\n", opening.len()).as_bytes());
    for _ in 0..10 {
        raw.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    raw.extend_from_slice(b"5\r\n\"}}}}\r\n0\r\n\r\n");
    raw_exchange(client.address(), raw).await.error(413, 4);

    assert_eq!(
        everyone(&client).await,
        Vec::<String>::new(),
        "nothing written"
    );
}

#[tokio::test]
async fn unknown_routes_methods_users_and_tasks_answer_error_bodies() {
    let (_srv, client) = door().await;
    client.get("/api/v2/nothing-here").await.error(404, 16);
    client.get("/").await.error(404, 16);
    client.delete("/api/v2/users").await.error(405, 4);
    client
        .get("/api/v2/tasks/no-such-task")
        .await
        .error(404, 16);
    client
        .post("/api/v2/users/ghost/deactivate", &json!({}))
        .await
        .error(404, 16);
    client
        .patch(
            "/api/v2/users",
            &json!({"users": [{"id": "ghost", "set": {"name": "x"}}]}),
        )
        .await
        .error(404, 16);
    assert_eq!(
        everyone(&client).await,
        Vec::<String>::new(),
        "nothing written"
    );
}
