//! Upsert, partial update and query, in the shapes Stream's SDKs decode.
use super::*;

/// Nanoseconds since the epoch, now.
fn now_nanos() -> i64 {
    now_micros() * 1_000
}

/// `value` is an integer instant within a minute of now.
fn assert_recent_nanos(value: &Json, what: &str) {
    let nanos = value
        .as_i64()
        .unwrap_or_else(|| panic!("{what} is an integer: {value}"));
    assert!(
        (nanos - now_nanos()).abs() < 60_000_000_000,
        "{what} is nanoseconds since the epoch, now-ish: {nanos}"
    );
}

#[tokio::test]
async fn upsert_answers_full_users_keyed_by_id_with_nanosecond_instants() {
    let (_srv, client) = door().await;
    let answer = client
        .post(
            "/api/v2/users",
            &json!({"users": {"ann": {
                "id": "ann",
                "name": "Ann",
                "image": "https://img.example/ann.png",
                "role": "admin",
                "custom": {"color": "blue", "level": 3},
                "language": "fr",
                "invisible": true,
                "teams": ["red"],
                "teams_role": {"red": "admin"},
                "privacy_settings": {"typing_indicators": {"enabled": false}},
            }, "bob": {"id": "bob", "name": null, "custom": null}}}),
        )
        .await
        .ok();
    assert_eq!(answer["membership_deletion_task_id"], "");
    let ann = &answer["users"]["ann"];
    assert_eq!(ann["id"], "ann");
    assert_eq!(ann["name"], "Ann");
    assert_eq!(ann["image"], "https://img.example/ann.png");
    assert_eq!(ann["role"], "admin");
    assert_eq!(ann["custom"], json!({"color": "blue", "level": 3}));
    assert_eq!(ann["language"], "fr");
    assert_eq!(ann["invisible"], true);
    assert_eq!(ann["teams"], json!(["red"]));
    assert_eq!(ann["teams_role"], json!({"red": "admin"}));
    assert_eq!(
        ann["privacy_settings"],
        json!({"typing_indicators": {"enabled": false}})
    );
    for flag in ["banned", "shadow_banned", "online"] {
        assert_eq!(ann[flag], false, "{flag}");
    }
    assert_eq!(ann["blocked_user_ids"], json!([]));
    assert_eq!(ann["devices"], json!([]));
    assert_recent_nanos(&ann["created_at"], "created_at");
    assert_recent_nanos(&ann["updated_at"], "updated_at");
    assert!(
        ann.get("deactivated_at").is_none(),
        "absent instants are left out"
    );

    let bob = &answer["users"]["bob"];
    assert_eq!(bob["role"], "user", "the default role");
    assert_eq!(bob["custom"], json!({}));
    assert_eq!(bob["teams"], json!([]));
    assert!(bob.get("name").is_none());

    // A replace is whole: fields left out return to their defaults.
    let again = client
        .post("/api/v2/users", &json!({"users": {"ann": {"id": "ann"}}}))
        .await
        .ok();
    assert_eq!(again["users"]["ann"]["custom"], json!({}));
    assert_eq!(again["users"]["ann"]["role"], "user");
    assert_eq!(again["users"]["ann"]["created_at"], ann["created_at"]);
}

#[tokio::test]
async fn partial_update_sets_and_unsets_and_takes_rfc3339_instants() {
    let (_srv, client) = door().await;
    client
        .post(
            "/api/v2/users",
            &json!({"users": {"u1": {"id": "u1", "name": "One", "custom": {"a": 1, "b": 2}}}}),
        )
        .await
        .ok();
    let answer = client
        .patch(
            "/api/v2/users",
            &json!({"users": [{
                "id": "u1",
                "set": {"name": "Uno", "c": {"d": true}, "revoke_tokens_issued_before": "2026-01-02T03:04:05Z"},
                "unset": ["b"],
            }]}),
        )
        .await
        .ok();
    let u1 = &answer["users"]["u1"];
    assert_eq!(u1["name"], "Uno");
    assert_eq!(u1["custom"], json!({"a": 1, "c": {"d": true}}));
    assert_eq!(
        u1["revoke_tokens_issued_before"],
        json!(1_767_323_045_000_000_000_i64)
    );
    let only_unset = client
        .patch(
            "/api/v2/users",
            &json!({"users": [{"id": "u1", "set": null, "unset": ["a"]}]}),
        )
        .await
        .ok();
    assert_eq!(
        only_unset["users"]["u1"]["custom"],
        json!({"c": {"d": true}})
    );
}

#[tokio::test]
async fn query_filters_sorts_pages_bounds_ids_and_takes_nulls() {
    let (_srv, client) = door().await;
    let users: serde_json::Map<String, Json> = (1..=6)
        .map(|i| {
            let id = format!("q{i}");
            let team = if i % 2 == 0 { "even" } else { "odd" };
            (
                id.clone(),
                json!({"id": id, "custom": {"n": i, "team": team}}),
            )
        })
        .collect();
    client
        .post("/api/v2/users", &json!({"users": users}))
        .await
        .ok();

    // What the Python SDK sends: every key, `null` where not given.
    let answer = client
        .query_users(&json!({
            "filter_conditions": {"team": "even"},
            "sort": null, "limit": null, "offset": null, "presence": null,
            "include_deactivated_users": null, "user_id": null, "user": null,
        }))
        .await
        .ok();
    let mut even = user_ids(&answer);
    even.sort();
    assert_eq!(even, ["q2", "q4", "q6"]);

    let page = client
        .query_users(&json!({
            "filter_conditions": {"n": {"$gte": 2}},
            "sort": [{"field": "n", "direction": -1}],
            "limit": 2,
            "offset": 1,
        }))
        .await
        .ok();
    assert_eq!(user_ids(&page), ["q5", "q4"]);
    assert_eq!(page["users"][0]["custom"]["n"], 5);

    let bounded = client
        .query_users(&json!({
            "filter_conditions": {"team": "odd"},
            "sort": [{"field": "id", "direction": 1}],
            "id_gt": "q1",
            "id_lte": "q5",
        }))
        .await
        .ok();
    assert_eq!(user_ids(&bounded), ["q3", "q5"]);

    // GetUser over HTTP is a query by id.
    let one = client
        .query_users(&json!({"filter_conditions": {"id": {"$eq": "q3"}}}))
        .await
        .ok();
    assert_eq!(user_ids(&one), ["q3"]);
    let none = client
        .query_users(&json!({"filter_conditions": {"id": {"$in": ["nobody"]}}}))
        .await
        .ok();
    assert_eq!(none["users"], json!([]));
}
