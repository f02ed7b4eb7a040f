//! `UpdateUsers`: create, replace, and the rejections that write nothing.

use roster::pb::{PrivacySetting, PrivacySettings, PushNotificationSettings, User, UserRequest};
use serde_json::json;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn seed_example_creates_two_users_with_role_user() {
    let srv = Launch::new().start().await;

    let users = srv
        .upsert_ok([
            user("user1").with_name("Test User 1").with_role("user"),
            user("user2").with_name("Test User 2").with_role("user"),
        ])
        .await;

    assert_eq!(
        sorted(users.keys().cloned().collect()),
        id_set(["user1", "user2"])
    );
    for (id, name) in [("user1", "Test User 1"), ("user2", "Test User 2")] {
        let returned = &users[id];
        assert_eq!(returned.id, id);
        assert_eq!(returned.name.as_deref(), Some(name));
        assert_eq!(returned.image, None);
        assert_eq!(returned.role, "user");
        assert_eq!(custom_of(returned), json!({}));
        assert!(returned.created_at.is_some() && returned.updated_at.is_some());
        assert_eq!(
            &srv.get_ok(id).await,
            returned,
            "GetUser shows what UpdateUsers returned"
        );
    }
    assert_eq!(srv.all_ids().await, id_set(["user1", "user2"]));
}

#[tokio::test]
async fn seed_example_upsert_then_partial_update() {
    let srv = Launch::new().start().await;

    let created = srv
        .upsert_ok([user("userid")
            .with_role("user")
            .with_custom(json!({"color": "blue"}))
            .with_name("This is a test user")
            .with_image("link/to/profile/image")])
        .await;
    let created = &created["userid"];
    assert_eq!(created.name.as_deref(), Some("This is a test user"));
    assert_eq!(created.image.as_deref(), Some("link/to/profile/image"));
    assert_eq!(created.role, "user");
    assert_eq!(custom_of(created), json!({"color": "blue"}));

    let updated = srv
        .update_partial_ok(partial("userid", json!({"new-field": "value"}), &["name"]))
        .await;

    assert_eq!(updated.id, "userid");
    assert_eq!(updated.name, None, "unset name clears it");
    assert_eq!(updated.image.as_deref(), Some("link/to/profile/image"));
    assert_eq!(updated.role, "user");
    assert_eq!(
        custom_of(&updated),
        json!({"color": "blue", "new-field": "value"})
    );
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(srv.get_ok("userid").await, updated);
}

/// Every caller-settable field set to a non-default value.
fn full_user(id: &str) -> UserRequest {
    UserRequest {
        privacy_settings: Some(PrivacySettings {
            typing_indicators: Some(PrivacySetting { enabled: false }),
            read_receipts: Some(PrivacySetting { enabled: true }),
            delivery_receipts: None,
        }),
        push_notifications: Some(PushNotificationSettings {
            disabled: true,
            disabled_until: Some(prost_types::Timestamp {
                seconds: 4_102_444_800,
                nanos: 0,
            }),
        }),
        invisible: true,
        ..user(id)
            .with_name("Full")
            .with_image("https://example.com/full.png")
            .with_role("admin")
            .with_custom(json!({"color": "blue", "nested": {"a": [1, 2, 3]}}))
            .with_language("fr")
            .with_teams(&["red", "blue"])
            .with_team_role("red", "admin")
    }
}

#[tokio::test]
async fn create_returns_every_caller_field() {
    let srv = Launch::new().start().await;

    let users = srv.upsert_ok([full_user("u1")]).await;

    let u = &users["u1"];
    assert_eq!(u.name.as_deref(), Some("Full"));
    assert_eq!(u.image.as_deref(), Some("https://example.com/full.png"));
    assert_eq!(u.role, "admin");
    assert_eq!(
        custom_of(u),
        json!({"color": "blue", "nested": {"a": [1, 2, 3]}})
    );
    assert_eq!(u.language, "fr");
    assert!(u.invisible);
    assert_eq!(u.teams, ["red", "blue"], "teams keep the order given");
    assert_eq!(u.teams_role.get("red").map(String::as_str), Some("admin"));
    assert_eq!(u.teams_role.len(), 1);
    assert_eq!(u.privacy_settings, full_user("u1").privacy_settings);
    assert_eq!(u.push_notifications, full_user("u1").push_notifications);
    assert_eq!(
        u.created_at, u.updated_at,
        "a new user was created and last updated at once"
    );
    assert_eq!(u.deactivated_at, None);
    assert_eq!(u.deleted_at, None);
    assert_eq!(&srv.get_ok("u1").await, u);
}

#[tokio::test]
async fn replace_resets_omitted_caller_fields_and_keeps_server_fields() {
    let srv = Launch::new().start().await;
    let before = srv
        .upsert_ok([full_user("u1")])
        .await
        .remove("u1")
        .expect("u1 returned");

    let after = srv
        .upsert_ok([user("u1")])
        .await
        .remove("u1")
        .expect("u1 returned");

    assert_eq!(after.id, "u1");
    assert_eq!(after.name, None);
    assert_eq!(after.image, None);
    assert_eq!(after.role, "user", "an omitted role is reset to `user`");
    assert_eq!(custom_of(&after), json!({}));
    assert_eq!(after.language, "");
    assert!(!after.invisible);
    assert!(after.teams.is_empty());
    assert!(after.teams_role.is_empty());
    assert_eq!(after.privacy_settings, None);
    assert_eq!(after.push_notifications, None);
    assert_eq!(
        after.created_at, before.created_at,
        "created_at survives a replace"
    );
    assert!(
        micros(&after.updated_at) >= micros(&before.updated_at),
        "updated_at never goes back"
    );
    assert_eq!(after.deactivated_at, None);
    assert_eq!(after.deleted_at, None);
    assert_eq!(srv.get_ok("u1").await, after);
}

#[tokio::test]
async fn upsert_creates_missing_and_replaces_existing_in_one_batch() {
    let srv = Launch::new().start().await;
    let old = srv
        .upsert_ok([user("old").with_name("Old").with_custom(json!({"k": 1}))])
        .await;

    let users = srv
        .upsert_ok([
            user("old").with_name("Renamed"),
            user("new").with_name("New"),
        ])
        .await;

    assert_eq!(users["old"].name.as_deref(), Some("Renamed"));
    assert_eq!(custom_of(&users["old"]), json!({}));
    assert_eq!(users["old"].created_at, old["old"].created_at);
    assert_eq!(users["new"].name.as_deref(), Some("New"));
    assert_eq!(srv.all_ids().await, id_set(["new", "old"]));
}

#[tokio::test]
async fn accepts_ids_of_255_characters_and_every_allowed_character() {
    let srv = Launch::new().start().await;
    let long = "x".repeat(255);
    let charset = "azAZ09@_-";

    let users = srv.upsert_ok([user(&long), user(charset)]).await;

    assert_eq!(users[&long].id, long);
    assert_eq!(srv.get_ok(&long).await.id, long);
    assert_eq!(srv.get_ok(charset).await.id, charset);
}

#[tokio::test]
async fn accepts_a_batch_of_100_users() {
    let srv = Launch::new().start().await;

    let users = srv
        .upsert_ok((0..100).map(|i| user(&format!("u{i:03}"))))
        .await;

    assert_eq!(users.len(), 100);
    assert_eq!(srv.all_ids().await.len(), 100);
}

/// Sends `batch` plus a change to an existing user and a new good user; expects INVALID_ARGUMENT
/// naming `field`, and afterwards exactly the users and field values that were there before.
async fn assert_rejected_writes_nothing(srv: &Server, batch: Vec<UserRequest>, field: &str) {
    srv.upsert_ok([user("existing")
        .with_name("Before")
        .with_custom(json!({"v": 1}))])
        .await;
    let before = srv.all_users().await;

    let mut request = batch;
    request.push(user("existing").with_name("After"));
    request.push(user("good-new").with_name("Good"));
    let status = expect_err(srv.upsert(request).await);

    assert_invalid(&status, field);
    assert_eq!(
        srv.all_users().await,
        before,
        "a rejected batch writes nothing"
    );
    assert_eq!(srv.get_ok("existing").await.name.as_deref(), Some("Before"));
    assert_reason(
        &expect_err(srv.get("good-new").await),
        Code::NotFound,
        "USER_NOT_FOUND",
    );
}

#[tokio::test]
async fn rejects_more_than_100_users_and_writes_nothing() {
    let srv = Launch::new().start().await;
    // 99 here plus the two the helper adds.
    let batch = (0..99).map(|i| user(&format!("u{i:03}"))).collect();

    assert_rejected_writes_nothing(&srv, batch, "users").await;
    assert_reason(
        &expect_err(srv.get("u000").await),
        Code::NotFound,
        "USER_NOT_FOUND",
    );
}

#[tokio::test]
async fn rejects_an_empty_batch() {
    let srv = Launch::new().start().await;

    let status = expect_err(srv.upsert([]).await);

    assert_invalid(&status, "users");
}

#[tokio::test]
async fn rejects_an_id_with_a_space_and_writes_nothing() {
    let srv = Launch::new().start().await;

    assert_rejected_writes_nothing(&srv, vec![user("a b")], "users[a b].id").await;
}

#[tokio::test]
async fn rejects_an_id_with_a_dot_and_writes_nothing() {
    let srv = Launch::new().start().await;

    assert_rejected_writes_nothing(&srv, vec![user("a.b")], "users[a.b].id").await;
}

#[tokio::test]
async fn rejects_an_id_of_256_characters_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let id = "x".repeat(256);

    assert_rejected_writes_nothing(&srv, vec![user(&id)], &format!("users[{id}].id")).await;
}

#[tokio::test]
async fn rejects_an_unknown_role_and_writes_nothing() {
    let srv = Launch::new().start().await;

    assert_rejected_writes_nothing(&srv, vec![user("u1").with_role("wizard")], "users[u1].role")
        .await;
}

/// `{"blob": "xx…"}` whose compact JSON serialization is exactly `size` bytes.
fn custom_of_size(size: usize) -> serde_json::Value {
    let overhead = r#"{"blob":""}"#.len();
    let custom = json!({"blob": "x".repeat(size - overhead)});
    assert_eq!(
        serde_json::to_string(&custom).expect("serialize").len(),
        size
    );
    custom
}

#[tokio::test]
async fn accepts_custom_that_keeps_the_user_under_5_kib() {
    let srv = Launch::new().start().await;
    let custom = custom_of_size(5 * 1024 - 256);

    let users = srv
        .upsert_ok([user("u1").with_name("One").with_custom(custom.clone())])
        .await;

    assert_eq!(custom_of(&users["u1"]), custom);
    assert_eq!(custom_of(&srv.get_ok("u1").await), custom);
}

/// SPEC 2: the whole user stays under 5 KiB of caller data, not only `custom`.
#[tokio::test]
async fn rejects_caller_data_over_5_kib_in_all_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let batch = vec![
        user("u1")
            .with_name(&"n".repeat(300))
            .with_custom(custom_of_size(5 * 1024 - 100)),
    ];

    assert_rejected_writes_nothing(&srv, batch, "users[u1]").await;
}

#[tokio::test]
async fn rejects_custom_of_5_kib_plus_one_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let batch = vec![user("u1").with_custom(custom_of_size(5 * 1024 + 1))];

    assert_rejected_writes_nothing(&srv, batch, "users[u1].custom").await;
}

#[tokio::test]
async fn rejects_non_finite_custom_numbers_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let mut nan = user("u1");
    let mut custom = struct_from(json!({}));
    custom.fields.insert(
        "x".to_owned(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
        },
    );
    nan.custom = Some(custom);

    assert_rejected_writes_nothing(&srv, vec![nan], "users[u1].custom").await;
}

#[tokio::test]
async fn rejects_a_teams_role_key_not_in_teams_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let batch = vec![
        user("u1")
            .with_teams(&["red"])
            .with_team_role("blue", "admin"),
    ];

    assert_rejected_writes_nothing(&srv, batch, "users[u1].teams_role").await;
}

#[tokio::test]
async fn rejects_a_teams_role_naming_an_unknown_role_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let batch = vec![
        user("u1")
            .with_teams(&["red"])
            .with_team_role("red", "wizard"),
    ];

    assert_rejected_writes_nothing(&srv, batch, "users[u1].teams_role").await;
}

#[tokio::test]
async fn rejects_duplicate_teams_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let batch = vec![user("u1").with_teams(&["red", "red"])];

    assert_rejected_writes_nothing(&srv, batch, "users[u1].teams").await;
}

#[tokio::test]
async fn rejects_a_language_over_16_characters_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let batch = vec![user("u1").with_language(&"e".repeat(17))];

    assert_rejected_writes_nothing(&srv, batch, "users[u1].language").await;
}

#[tokio::test]
async fn rejects_a_map_key_that_differs_from_the_id_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let before = srv.all_users().await;
    let request = roster::pb::UpdateUsersRequest {
        users: [("u1".to_owned(), user("u2").with_name("Two"))]
            .into_iter()
            .collect(),
    };

    let status = expect_err(srv.users().update_users(request).await);

    assert_invalid(&status, "users[u1].id");
    assert_eq!(srv.all_users().await, before);
    assert_eq!(expect_err(srv.get("u1").await).code(), Code::NotFound);
    assert_eq!(expect_err(srv.get("u2").await).code(), Code::NotFound);
}

#[tokio::test]
async fn one_bad_user_among_99_good_ones_writes_none_of_them() {
    let srv = Launch::new().start().await;
    // Half of the good ones already exist: the rejected batch must not change them either.
    srv.upsert_ok((0..50).map(|i| user(&format!("good{i:02}")).with_name("Before")))
        .await;
    let before: Vec<User> = srv.all_users().await;
    let mut batch: Vec<UserRequest> = (0..99)
        .map(|i| user(&format!("good{i:02}")).with_name("After"))
        .collect();
    batch.push(user("bad").with_role("no-such-role"));

    let status = expect_err(srv.upsert(batch).await);

    assert_invalid(&status, "users[bad].role");
    assert_eq!(
        srv.all_users().await,
        before,
        "none of the 99 good users was written"
    );
    assert_eq!(srv.get_ok("good00").await.name.as_deref(), Some("Before"));
    assert_eq!(expect_err(srv.get("good98").await).code(), Code::NotFound);
    assert_eq!(expect_err(srv.get("bad").await).code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_upserts_creating_one_user_all_succeed() {
    let srv = Launch::new().start().await;

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let mut users = srv.users();
            tokio::spawn(async move {
                let request = roster::pb::UpdateUsersRequest {
                    users: [("race".to_owned(), user("race").with_name(&format!("n{i}")))].into(),
                };
                users.update_users(request).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        if let Err(status) = task.await.expect("task panicked") {
            panic!("upsert {i} of a user being created concurrently failed: {status:?}");
        }
    }

    let race = srv.get_ok("race").await;
    assert!(
        race.name
            .as_deref()
            .is_some_and(|name| name.starts_with('n'))
    );
    assert_eq!(srv.all_ids().await, ["race"]);
}

/// Custom data nested past roster's limit (32 levels) or protobuf's decoding limit (about the
/// same depth) is bad input: INVALID_ARGUMENT, naming the user where the decoder lets it.
#[tokio::test]
async fn rejects_custom_nested_too_deep_and_writes_nothing() {
    let srv = Launch::new().start().await;
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "a": deep });
    }

    assert_rejected_writes_nothing(&srv, vec![user("u1").with_custom(deep)], "users").await;
}
