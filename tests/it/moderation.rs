//! `ModerationService`: bans (with expiry judged by the server's clock), shadow bans, the banned
//! list, blocks, and what deleting a user does to them.

use std::time::Duration;

use roster::pb::{
    Ban, BanUserRequest, BlockUsersRequest, CreateDeviceRequest, DeleteUsersRequest,
    GetBlockedUsersRequest, GetUserRequest, QueryBannedUsersRequest, QueryBannedUsersResponse,
    UnbanUserRequest, UnblockUsersRequest, User,
};
use serde_json::json;
use tonic::{Code, Status};

use crate::support::*;

fn ban_request(target: &str, timeout: u32) -> BanUserRequest {
    BanUserRequest {
        target_user_id: target.to_owned(),
        timeout,
        reason: Some("spam".to_owned()),
        shadow: false,
        banned_by_id: Some("mod-1".to_owned()),
    }
}

async fn ban(srv: &Server, request: BanUserRequest) -> Result<Ban, Status> {
    let response = srv.moderation().ban_user(request).await?.into_inner();
    Ok(response.ban.expect("BanUserResponse without a ban"))
}

async fn ban_ok(srv: &Server, request: BanUserRequest) -> Ban {
    ban(srv, request).await.expect("BanUser")
}

async fn unban(srv: &Server, target: &str) -> Result<User, Status> {
    let response = srv
        .moderation()
        .unban_user(UnbanUserRequest {
            target_user_id: target.to_owned(),
            created_by_id: Some("mod-2".to_owned()),
        })
        .await?
        .into_inner();
    Ok(response.user.expect("UnbanUserResponse without a user"))
}

async fn banned_list(
    srv: &Server,
    exclude_expired_bans: bool,
    limit: u32,
    page_token: &str,
) -> QueryBannedUsersResponse {
    srv.moderation()
        .query_banned_users(QueryBannedUsersRequest {
            exclude_expired_bans,
            limit,
            page_token: page_token.to_owned(),
        })
        .await
        .expect("QueryBannedUsers")
        .into_inner()
}

fn banned_ids(response: &QueryBannedUsersResponse) -> Vec<String> {
    response
        .bans
        .iter()
        .map(|ban| {
            ban.user
                .as_ref()
                .expect("a ban carries its user")
                .id
                .clone()
        })
        .collect()
}

async fn block(srv: &Server, user_id: &str, blocked: &str) -> Result<roster::pb::Block, Status> {
    let response = srv
        .moderation()
        .block_users(BlockUsersRequest {
            user_id: user_id.to_owned(),
            blocked_user_id: blocked.to_owned(),
        })
        .await?
        .into_inner();
    Ok(response.block.expect("BlockUsersResponse without a block"))
}

async fn unblock(srv: &Server, user_id: &str, blocked: &str) -> Result<(), Status> {
    srv.moderation()
        .unblock_users(UnblockUsersRequest {
            user_id: user_id.to_owned(),
            blocked_user_id: blocked.to_owned(),
        })
        .await
        .map(|_| ())
}

async fn blocked_users(srv: &Server, user_id: &str) -> Vec<roster::pb::Block> {
    srv.moderation()
        .get_blocked_users(GetBlockedUsersRequest {
            user_id: user_id.to_owned(),
        })
        .await
        .expect("GetBlockedUsers")
        .into_inner()
        .blocks
}

#[tokio::test]
async fn a_ban_with_a_timeout_stops_counting_once_the_clock_passes_its_expiry() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    let made = ban_ok(&srv, ban_request("u1", 2)).await;

    let created = micros(&made.created_at);
    assert_eq!(micros(&made.expires), created + 120_000_000);
    assert!(!made.shadow && !made.expired, "{made:?}");
    assert_eq!(made.reason.as_deref(), Some("spam"));
    assert_eq!(made.banned_by_id.as_deref(), Some("mod-1"));
    let banned = srv.get_ok("u1").await;
    assert!(banned.banned, "{banned:?}");
    assert!(!banned.shadow_banned);
    assert_eq!(banned.ban_expires, made.expires);
    assert!(micros(&banned.updated_at) >= created);
    let queried = srv.find(json!({"id": "u1"})).await.expect("QueryUsers");
    assert_eq!(queried, ["u1"]);
    assert!(
        srv.query(filter_query(json!({})))
            .await
            .expect("QueryUsers")
            .users[0]
            .banned
    );

    srv.clock().advance(Duration::from_secs(119));
    assert!(srv.get_ok("u1").await.banned, "still banned before expiry");
    srv.clock().advance(Duration::from_secs(2));

    let after = srv.get_ok("u1").await;
    assert!(
        !after.banned,
        "a ban past its expiry does not count: {after:?}"
    );
    assert_eq!(after.ban_expires, None);
    let listed = srv
        .query(filter_query(json!({})))
        .await
        .expect("QueryUsers");
    assert!(!listed.users[0].banned, "nor in queries");
}

#[tokio::test]
async fn a_shadow_ban_sets_shadow_banned_and_not_banned() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    let made = ban_ok(
        &srv,
        BanUserRequest {
            shadow: true,
            ..ban_request("u1", 0)
        },
    )
    .await;

    assert!(made.shadow);
    assert_eq!(made.expires, None, "timeout 0 never expires");
    let user = srv.get_ok("u1").await;
    assert!(user.shadow_banned, "{user:?}");
    assert!(!user.banned, "a shadow-banned user is not told: {user:?}");
    assert_eq!(user.ban_expires, None);
    srv.clock()
        .advance(Duration::from_secs(10 * 365 * 24 * 3600));
    assert!(srv.get_ok("u1").await.shadow_banned, "no expiry");
}

#[tokio::test]
async fn banning_again_replaces_the_ban() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    ban_ok(
        &srv,
        BanUserRequest {
            shadow: true,
            ..ban_request("u1", 1)
        },
    )
    .await;

    ban_ok(
        &srv,
        BanUserRequest {
            reason: Some("abuse".to_owned()),
            ..ban_request("u1", 0)
        },
    )
    .await;

    let user = srv.get_ok("u1").await;
    assert!(user.banned && !user.shadow_banned, "{user:?}");
    srv.clock().advance(Duration::from_secs(120));
    assert!(srv.get_ok("u1").await.banned, "the new ban has no expiry");
    let listed = banned_list(&srv, false, 0, "").await;
    assert_eq!(listed.bans.len(), 1);
    assert_eq!(listed.bans[0].reason.as_deref(), Some("abuse"));
}

#[tokio::test]
async fn unban_lifts_the_ban_and_unbanning_again_is_a_no_op() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    ban_ok(&srv, ban_request("u1", 0)).await;

    let unbanned = unban(&srv, "u1").await.expect("UnbanUser");

    assert!(!unbanned.banned && !unbanned.shadow_banned, "{unbanned:?}");
    assert_eq!(srv.get_ok("u1").await, unbanned);
    assert!(banned_list(&srv, false, 0, "").await.bans.is_empty());
    let again = unban(&srv, "u1")
        .await
        .expect("UnbanUser of a user without a ban");
    assert_eq!(again, unbanned, "nothing changed, not even updated_at");
    let events = srv.events(&["user.banned", "user.unbanned"], 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["user.banned", "user.unbanned"]);
    assert_eq!(events[0].created_by_id.as_deref(), Some("mod-1"));
    assert!(events[0].user.as_ref().expect("snapshot").banned);
    assert_eq!(events[1].created_by_id.as_deref(), Some("mod-2"));
    assert!(!events[1].user.as_ref().expect("snapshot").banned);
}

#[tokio::test]
async fn query_banned_users_lists_expired_bans_unless_they_are_excluded() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2"), user("u3"), user("u4")])
        .await;
    ban_ok(&srv, ban_request("u1", 1)).await;
    ban_ok(&srv, ban_request("u2", 0)).await;
    ban_ok(
        &srv,
        BanUserRequest {
            shadow: true,
            ..ban_request("u3", 60)
        },
    )
    .await;

    srv.clock().advance(Duration::from_secs(61));

    let all = banned_list(&srv, false, 0, "").await;
    assert_eq!(banned_ids(&all), ["u3", "u2", "u1"], "newest ban first");
    let expired: Vec<bool> = all.bans.iter().map(|b| b.expired).collect();
    assert_eq!(expired, [false, false, true]);
    let u1 = all.bans[2].user.as_ref().expect("user");
    assert!(!u1.banned, "the expired ban does not count: {u1:?}");
    assert!(all.bans[0].shadow);
    assert!(all.next_page_token.is_empty());
    let current = banned_list(&srv, true, 0, "").await;
    assert_eq!(banned_ids(&current), ["u3", "u2"]);
}

#[tokio::test]
async fn query_banned_users_pages_through_every_ban_once() {
    let srv = Launch::new().start().await;
    let ids: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
    srv.upsert_ok(ids.iter().map(|id| user(id))).await;
    for id in &ids {
        ban_ok(&srv, ban_request(id, 0)).await;
    }

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = banned_list(&srv, false, 3, &token).await;
        assert!(page.bans.len() <= 3);
        seen.extend(banned_ids(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }

    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let bad = expect_err(
        srv.moderation()
            .query_banned_users(QueryBannedUsersRequest {
                page_token: "garbage".to_owned(),
                ..Default::default()
            })
            .await,
    );
    assert_invalid(&bad, "page_token");
}

#[tokio::test]
async fn bans_are_checked_and_need_a_live_user() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("gone")]).await;
    let deleted = srv
        .users()
        .delete_users(DeleteUsersRequest {
            user_ids: vec!["gone".to_owned()],
            ..Default::default()
        })
        .await
        .expect("DeleteUsers")
        .into_inner();
    srv.wait_for_task(&deleted.task_id).await;

    assert_reason(
        &expect_err(ban(&srv, ban_request("nobody", 0)).await),
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    assert_reason(
        &expect_err(ban(&srv, ban_request("gone", 0)).await),
        Code::FailedPrecondition,
        "USER_DELETED",
    );
    assert_invalid(
        &expect_err(ban(&srv, ban_request("u1", 5_256_001)).await),
        "timeout",
    );
    assert_invalid(
        &expect_err(
            ban(
                &srv,
                BanUserRequest {
                    reason: Some("x".repeat(1001)),
                    ..ban_request("u1", 0)
                },
            )
            .await,
        ),
        "reason",
    );
    assert_invalid(
        &expect_err(ban(&srv, ban_request("bad id", 0)).await),
        "target_user_id",
    );
    assert!(!srv.get_ok("u1").await.banned, "nothing was written");
}

#[tokio::test]
async fn a_replace_keeps_the_ban_devices_and_blocks() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_name("Before"), user("u2")])
        .await;
    ban_ok(&srv, ban_request("u1", 0)).await;
    block(&srv, "u1", "u2").await.expect("BlockUsers");
    srv.devices()
        .create_device(CreateDeviceRequest {
            user_id: "u1".to_owned(),
            id: "d1".to_owned(),
            push_provider: "apn".to_owned(),
            ..Default::default()
        })
        .await
        .expect("CreateDevice");

    let replaced = srv.upsert_ok([user("u1").with_name("After")]).await;

    let u1 = &replaced["u1"];
    assert_eq!(u1.name.as_deref(), Some("After"));
    assert!(u1.banned, "{u1:?}");
    assert_eq!(u1.blocked_user_ids, ["u2"]);
    assert_eq!(u1.devices.len(), 1);
    assert_eq!(&srv.get_ok("u1").await, u1);
}

#[tokio::test]
async fn block_list_and_unblock() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2").with_name("Two"), user("u3")])
        .await;

    let first = block(&srv, "u1", "u2").await.expect("BlockUsers u2");
    let second = block(&srv, "u1", "u3").await.expect("BlockUsers u3");

    assert_eq!(first.user_id, "u1");
    assert_eq!(first.blocked_user_id, "u2");
    assert_eq!(
        first.blocked_user.as_ref().and_then(|u| u.name.as_deref()),
        Some("Two")
    );
    assert!(micros(&second.created_at) >= micros(&first.created_at));
    assert_eq!(srv.get_ok("u1").await.blocked_user_ids, ["u2", "u3"]);
    assert!(
        srv.get_ok("u2").await.blocked_user_ids.is_empty(),
        "one way"
    );
    let listed = blocked_users(&srv, "u1").await;
    assert_eq!(listed, [first.clone(), second.clone()]);

    unblock(&srv, "u1", "u2").await.expect("UnblockUsers");

    assert_eq!(srv.get_ok("u1").await.blocked_user_ids, ["u3"]);
    assert_eq!(blocked_users(&srv, "u1").await, [second]);
    unblock(&srv, "u1", "u2")
        .await
        .expect("unblocking a user not blocked is a no-op");
    let events = srv.events(&["user.blocked", "user.unblocked"], 3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["user.blocked", "user.blocked", "user.unblocked"]);
    let last = events[2].user.as_ref().expect("snapshot");
    assert_eq!(last.blocked_user_ids, ["u3"]);
}

#[tokio::test]
async fn blocking_twice_is_one_block() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2")]).await;

    let first = block(&srv, "u1", "u2").await.expect("BlockUsers");
    let again = block(&srv, "u1", "u2").await.expect("BlockUsers again");

    assert_eq!(again, first, "the existing block, with its created_at");
    assert_eq!(srv.get_ok("u1").await.blocked_user_ids, ["u2"]);
    assert_eq!(blocked_users(&srv, "u1").await.len(), 1);
    unblock(&srv, "u1", "u2").await.expect("UnblockUsers");
    let events = srv.events(&["user.blocked", "user.unblocked"], 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["user.blocked", "user.unblocked"], "one block event");
}

#[tokio::test]
async fn blocks_are_checked() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    assert_invalid(
        &expect_err(block(&srv, "u1", "u1").await),
        "blocked_user_id",
    );
    assert_reason(
        &expect_err(block(&srv, "u1", "nobody").await),
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    assert_reason(
        &expect_err(block(&srv, "nobody", "u1").await),
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    assert_invalid(&expect_err(block(&srv, "u1", "").await), "blocked_user_id");
    let missing = expect_err(
        srv.moderation()
            .get_blocked_users(GetBlockedUsersRequest {
                user_id: "nobody".to_owned(),
            })
            .await,
    );
    assert_reason(&missing, Code::NotFound, "USER_NOT_FOUND");
    assert!(srv.get_ok("u1").await.blocked_user_ids.is_empty());
}

async fn delete(srv: &Server, id: &str, mode: &str) {
    let hard = mode == "hard";
    let response = srv
        .users()
        .delete_users(DeleteUsersRequest {
            user_ids: vec![id.to_owned()],
            user: mode.to_owned(),
            messages: if hard {
                "hard".to_owned()
            } else {
                String::new()
            },
            conversations: if hard {
                "hard".to_owned()
            } else {
                String::new()
            },
            ..Default::default()
        })
        .await
        .expect("DeleteUsers")
        .into_inner();
    srv.wait_for_task(&response.task_id).await;
}

async fn add_device(srv: &Server, user_id: &str, id: &str) {
    srv.devices()
        .create_device(CreateDeviceRequest {
            user_id: user_id.to_owned(),
            id: id.to_owned(),
            push_provider: "firebase".to_owned(),
            ..Default::default()
        })
        .await
        .expect("CreateDevice");
}

async fn get_deleted(srv: &Server, id: &str) -> User {
    srv.users()
        .get_user(GetUserRequest {
            id: id.to_owned(),
            include_deleted: true,
        })
        .await
        .expect("GetUser include_deleted")
        .into_inner()
        .user
        .expect("a user")
}

#[tokio::test]
async fn pruning_removes_the_users_devices_and_its_own_blocks() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2"), user("u3")]).await;
    add_device(&srv, "u1", "d1").await;
    block(&srv, "u1", "u2").await.expect("u1 blocks u2");
    block(&srv, "u3", "u1").await.expect("u3 blocks u1");

    delete(&srv, "u1", "pruning").await;

    let pruned = get_deleted(&srv, "u1").await;
    assert!(pruned.devices.is_empty(), "{pruned:?}");
    assert!(pruned.blocked_user_ids.is_empty(), "{pruned:?}");
    assert_eq!(
        srv.get_ok("u3").await.blocked_user_ids,
        ["u1"],
        "others' blocks of a pruned user stay"
    );
    let events = srv.events(&["user.pruned"], 1).await;
    let snapshot = events[0].user.as_ref().expect("snapshot");
    assert!(snapshot.devices.is_empty() && snapshot.blocked_user_ids.is_empty());
}

#[tokio::test]
async fn hard_deletion_removes_devices_and_every_block_so_a_reused_id_inherits_nothing() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2"), user("u3")]).await;
    add_device(&srv, "u1", "d1").await;
    block(&srv, "u1", "u2").await.expect("u1 blocks u2");
    block(&srv, "u3", "u1").await.expect("u3 blocks u1");
    ban_ok(&srv, ban_request("u1", 0)).await;

    delete(&srv, "u1", "hard").await;

    assert!(srv.get_ok("u3").await.blocked_user_ids.is_empty());
    let reborn = srv.upsert_ok([user("u1")]).await.remove("u1").expect("u1");
    assert!(reborn.devices.is_empty(), "{reborn:?}");
    assert!(reborn.blocked_user_ids.is_empty(), "{reborn:?}");
    assert!(!reborn.banned, "{reborn:?}");
    assert!(banned_list(&srv, false, 0, "").await.bans.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_blocks_make_one_block() {
    let srv = std::sync::Arc::new(Launch::new().start().await);
    srv.upsert_ok([user("u1"), user("u2")]).await;

    let blocks: Vec<_> = (0..6)
        .map(|_| {
            let srv = std::sync::Arc::clone(&srv);
            tokio::spawn(async move { block(&srv, "u1", "u2").await })
        })
        .collect();
    let mut made = Vec::new();
    for b in blocks {
        made.push(b.await.expect("task").expect("BlockUsers"));
    }

    assert!(
        made.windows(2).all(|w| w[0] == w[1]),
        "all see one block: {made:?}"
    );
    assert_eq!(srv.get_ok("u1").await.blocked_user_ids, ["u2"]);
}
