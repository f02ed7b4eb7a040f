//! Blocks, bans, devices and roles, in Stream's shapes.
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
async fn block_list_and_unblock() {
    let (_srv, client) = door().await;
    create(&client, &["alice", "bob"]).await;
    let block = client
        .post(
            "/api/v2/users/block",
            &json!({"user_id": "alice", "blocked_user_id": "bob", "user": null}),
        )
        .await
        .ok();
    assert_eq!(block["blocked_by_user_id"], "alice");
    assert_eq!(block["blocked_user_id"], "bob");
    assert!(block["created_at"].is_i64(), "{block}");

    let list = client.get("/api/v2/users/block?user_id=alice").await.ok();
    let blocks = list["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{list}");
    assert_eq!(blocks[0]["user_id"], "alice");
    assert_eq!(blocks[0]["user"]["id"], "alice");
    assert_eq!(blocks[0]["blocked_user_id"], "bob");
    assert_eq!(blocks[0]["blocked_user"]["id"], "bob");
    assert_eq!(blocks[0]["created_at"], block["created_at"]);
    let alice = client
        .query_users(&json!({"filter_conditions": {"id": "alice"}}))
        .await
        .ok();
    assert_eq!(alice["users"][0]["blocked_user_ids"], json!(["bob"]));

    let unblocked = client
        .post(
            "/api/v2/users/unblock",
            &json!({"user_id": "alice", "blocked_user_id": "bob"}),
        )
        .await
        .ok();
    assert_eq!(
        unblocked.as_object().unwrap().len(),
        1,
        "only duration: {unblocked}"
    );
    let list = client.get("/api/v2/users/block?user_id=alice").await.ok();
    assert_eq!(list["blocks"], json!([]));

    client
        .post(
            "/api/v2/users/block",
            &json!({"user_id": "alice", "blocked_user_id": "alice"}),
        )
        .await
        .error(400, 4);
    client
        .post("/api/v2/users/block", &json!({"blocked_user_id": "bob"}))
        .await
        .error(400, 4);
    client.get("/api/v2/users/block").await.error(400, 4);
}

#[tokio::test]
async fn ban_list_and_unban() {
    let (_srv, client) = door().await;
    create(&client, &["troll", "mod", "shadowy"]).await;
    let answer = client
        .post(
            "/api/v2/moderation/ban",
            &json!({"target_user_id": "troll", "banned_by_id": "mod", "timeout": 60, "reason": "spam", "shadow": null}),
        )
        .await
        .ok();
    assert_eq!(
        answer.as_object().unwrap().len(),
        1,
        "only duration: {answer}"
    );
    client
        .post(
            "/api/v2/moderation/ban",
            &json!({"target_user_id": "shadowy", "shadow": true}),
        )
        .await
        .ok();

    let troll = client
        .query_users(&json!({"filter_conditions": {"id": "troll"}}))
        .await
        .ok();
    assert_eq!(troll["users"][0]["banned"], true);
    assert!(troll["users"][0]["ban_expires"].is_i64(), "{troll}");

    let payload = encode(&json!({"filter_conditions": {}, "limit": 10}).to_string());
    let bans = client
        .get(&format!(
            "/api/v2/chat/query_banned_users?payload={payload}"
        ))
        .await
        .ok();
    let bans = bans["bans"].as_array().unwrap().clone();
    assert_eq!(bans.len(), 2, "{bans:?}");
    let troll_ban = bans
        .iter()
        .find(|b| b["user"]["id"] == "troll")
        .expect("troll's ban");
    assert_eq!(troll_ban["reason"], "spam");
    assert_eq!(troll_ban["shadow"], false);
    assert_eq!(troll_ban["banned_by"]["id"], "mod");
    assert!(troll_ban["created_at"].is_i64() && troll_ban["expires"].is_i64());
    let shadow_ban = bans
        .iter()
        .find(|b| b["user"]["id"] == "shadowy")
        .expect("shadow ban");
    assert_eq!(shadow_ban["shadow"], true);
    assert_eq!(shadow_ban["user"]["shadow_banned"], true);

    client
        .post(
            "/api/v2/moderation/unban?target_user_id=troll&created_by=mod",
            &json!({}),
        )
        .await
        .ok();
    let troll = client
        .query_users(&json!({"filter_conditions": {"id": "troll"}}))
        .await
        .ok();
    assert_eq!(troll["users"][0]["banned"], false);

    client
        .post(
            "/api/v2/moderation/ban",
            &json!({"target_user_id": "troll", "channel_cid": "messaging:general"}),
        )
        .await
        .error(400, 4);
    client
        .post(
            "/api/v2/moderation/ban",
            &json!({"target_user_id": "nobody"}),
        )
        .await
        .error(404, 16);
    client
        .post("/api/v2/moderation/unban", &json!({}))
        .await
        .error(400, 4);
    let filtered = encode(&json!({"filter_conditions": {"reason": "spam"}}).to_string());
    client
        .get(&format!(
            "/api/v2/chat/query_banned_users?payload={filtered}"
        ))
        .await
        .error(400, 4);
}

#[tokio::test]
async fn devices_are_created_listed_and_deleted() {
    let (_srv, client) = door().await;
    create(&client, &["phone-owner"]).await;
    client
        .post(
            "/api/v2/devices",
            &json!({"id": "token-1", "push_provider": "apn", "push_provider_name": "prod", "user_id": "phone-owner", "voip_token": true}),
        )
        .await
        .ok();
    client
        .post(
            "/api/v2/devices",
            &json!({"id": "token-2", "push_provider": "firebase", "user_id": "phone-owner"}),
        )
        .await
        .ok();
    let list = client.get("/api/v2/devices?user_id=phone-owner").await.ok();
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{list}");
    assert_eq!(devices[0]["id"], "token-1");
    assert_eq!(devices[0]["push_provider"], "apn");
    assert_eq!(devices[0]["push_provider_name"], "prod");
    assert_eq!(devices[0]["voip"], true);
    assert_eq!(devices[0]["user_id"], "phone-owner");
    assert!(devices[0]["created_at"].is_i64());

    client
        .delete("/api/v2/devices?id=token-1&user_id=phone-owner")
        .await
        .ok();
    let list = client.get("/api/v2/devices?user_id=phone-owner").await.ok();
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);

    client
        .post(
            "/api/v2/devices",
            &json!({"id": "t", "push_provider": "pigeon", "user_id": "phone-owner"}),
        )
        .await
        .error(400, 4);
    client
        .delete("/api/v2/devices?id=token-9&user_id=phone-owner")
        .await
        .error(404, 16);
    client
        .delete("/api/v2/devices?id=token-2")
        .await
        .error(400, 4);
}

#[tokio::test]
async fn roles_are_created_listed_and_deleted() {
    let (_srv, client) = door().await;
    let created = client
        .post("/api/v2/roles", &json!({"name": "editor"}))
        .await
        .ok();
    assert_eq!(created["role"]["name"], "editor");
    assert_eq!(created["role"]["custom"], true);
    assert_eq!(created["role"]["scopes"], json!([]));
    assert!(created["role"]["created_at"].is_i64());

    let list = client.get("/api/v2/roles").await.ok();
    let roles = list["roles"].as_array().unwrap();
    let user = roles
        .iter()
        .find(|r| r["name"] == "user")
        .expect("built-in user role");
    assert_eq!(user["custom"], false);
    assert!(roles.iter().any(|r| r["name"] == "editor"));

    client
        .post("/api/v2/roles", &json!({"name": "editor"}))
        .await
        .error(409, 4);
    client.delete("/api/v2/roles/user").await.error(400, 4);
    client.delete("/api/v2/roles/editor").await.ok();
    client.delete("/api/v2/roles/editor").await.error(404, 16);
}
