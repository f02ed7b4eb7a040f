//! Deactivate, reactivate, delete and restore, and task status, in Stream's shapes.
use super::*;

async fn create(client: &HttpClient, ids: &[&str]) {
    let users: serde_json::Map<String, Json> = ids
        .iter()
        .map(|id| ((*id).to_owned(), json!({"id": id})))
        .collect();
    client
        .post("/api/v2/users", &json!({"users": users}))
        .await
        .ok();
}

#[tokio::test]
async fn deactivate_and_reactivate_one_answer_the_user() {
    let (_srv, client) = door().await;
    create(&client, &["d1"]).await;
    let answer = client
        .post(
            "/api/v2/users/d1/deactivate",
            &json!({"created_by_id": null, "mark_messages_deleted": false}),
        )
        .await
        .ok();
    assert_eq!(answer["user"]["id"], "d1");
    assert!(answer["user"]["deactivated_at"].is_i64(), "{answer}");
    assert_eq!(everyone(&client).await, ["d1"], "still there, deactivated");
    let active = client
        .query_users(&json!({"filter_conditions": {}}))
        .await
        .ok();
    assert_eq!(
        active["users"],
        json!([]),
        "hidden without include_deactivated_users"
    );

    // An empty body is `{}`.
    let answer = client
        .send("POST", "/api/v2/users/d1/reactivate", None)
        .await
        .ok();
    assert_eq!(answer["user"]["id"], "d1");
    assert!(answer["user"].get("deactivated_at").is_none(), "{answer}");
}

#[tokio::test]
async fn many_user_calls_answer_a_task_that_reports_lower_case_statuses() {
    let (_srv, client) = door().await;
    create(&client, &["m1", "m2", "m3"]).await;
    let answer = client
        .post(
            "/api/v2/users/deactivate",
            &json!({"user_ids": ["m1", "m2"], "created_by_id": "m3", "mark_channels_deleted": true}),
        )
        .await
        .ok();
    let task_id = answer["task_id"].as_str().expect("task_id").to_owned();
    let task = finished_task(&client, &task_id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["task_id"], task_id.as_str());
    assert!(
        task["created_at"].is_i64() && task["updated_at"].is_i64(),
        "{task}"
    );
    assert!(task["duration"].is_string());
    let active = client
        .query_users(&json!({"filter_conditions": {}}))
        .await
        .ok();
    assert_eq!(user_ids(&active), ["m3"]);

    let answer = client
        .post(
            "/api/v2/users/reactivate",
            &json!({"user_ids": ["m1", "m2"], "restore_messages": true}),
        )
        .await
        .ok();
    let task = finished_task(&client, answer["task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "completed", "{task}");
    let active = client
        .query_users(&json!({"filter_conditions": {}}))
        .await
        .ok();
    assert_eq!(user_ids(&active).len(), 3);
}

#[tokio::test]
async fn delete_in_each_mode_reports_per_user_results_and_restore_brings_soft_deletes_back() {
    let (_srv, client) = door().await;
    create(&client, &["soft1", "prune1", "hard1"]).await;
    for (id, body) in [
        (
            "soft1",
            json!({"user_ids": ["soft1"], "user": "soft", "messages": null, "conversations": null, "calls": null, "files": null, "new_channel_owner_id": null, "new_call_owner_id": null}),
        ),
        (
            "prune1",
            json!({"user_ids": ["prune1"], "user": "pruning", "messages": "soft"}),
        ),
        (
            "hard1",
            json!({"user_ids": ["hard1"], "user": "hard", "messages": "hard", "conversations": "hard", "calls": "hard", "files": true}),
        ),
    ] {
        let answer = client.post("/api/v2/users/delete", &body).await.ok();
        let task = finished_task(&client, answer["task_id"].as_str().unwrap()).await;
        assert_eq!(task["status"], "completed", "{id}: {task}");
        assert_eq!(task["result"][id]["status"], "ok", "{id}: {task}");
    }
    assert_eq!(everyone(&client).await, Vec::<String>::new());

    let answer = client
        .post("/api/v2/users/restore", &json!({"user_ids": ["soft1"]}))
        .await
        .ok();
    assert_eq!(
        answer.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["duration"]
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while everyone(&client).await != ["soft1"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "soft1 restored within 30 s"
        );
        tokio::time::sleep(POLL).await;
    }
    // A hard-deleted user is gone.
    client
        .post("/api/v2/users/restore", &json!({"user_ids": ["hard1"]}))
        .await
        .error(404, 16);
}
