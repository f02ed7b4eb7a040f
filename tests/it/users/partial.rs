//! `UpdateUsersPartial`: set, unset, dotted paths, merging, and atomicity.

use std::collections::BTreeMap;

use roster::pb::PrivacySetting;
use serde_json::json;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn dotted_set_and_unset_change_nested_custom_keys() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")
        .with_custom(json!({"address": {"city": "Paris", "zip": "75001"}, "color": "blue"}))])
        .await;

    let u = srv
        .update_partial_ok(partial("u1", json!({"address.city": "Lyon"}), &[]))
        .await;
    assert_eq!(
        custom_of(&u),
        json!({"address": {"city": "Lyon", "zip": "75001"}, "color": "blue"}),
        "setting address.city keeps its siblings"
    );

    let u = srv
        .update_partial_ok(partial("u1", json!({"geo.point.lat": 1.5}), &[]))
        .await;
    assert_eq!(
        custom_of(&u)["geo"],
        json!({"point": {"lat": 1.5}}),
        "intermediate objects are created"
    );

    let u = srv
        .update_partial_ok(partial("u1", json!({}), &["address.zip"]))
        .await;
    assert_eq!(
        custom_of(&u),
        json!({"address": {"city": "Lyon"}, "color": "blue", "geo": {"point": {"lat": 1.5}}})
    );

    let u = srv
        .update_partial_ok(partial("u1", json!({}), &["address.nowhere", "missing"]))
        .await;
    assert_eq!(
        custom_of(&u),
        json!({"address": {"city": "Lyon"}, "color": "blue", "geo": {"point": {"lat": 1.5}}}),
        "unsetting a key that is not there is not an error"
    );
    assert_eq!(srv.get_ok("u1").await, u);
}

#[tokio::test]
async fn privacy_settings_merge_entry_by_entry() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    srv.update_partial_ok(partial(
        "u1",
        json!({"privacy_settings": {"typing_indicators": {"enabled": false}}}),
        &[],
    ))
    .await;
    let u = srv
        .update_partial_ok(partial(
            "u1",
            json!({"privacy_settings": {"read_receipts": {"enabled": true}}}),
            &[],
        ))
        .await;

    let settings = u.privacy_settings.expect("privacy_settings set");
    assert_eq!(
        settings.typing_indicators,
        Some(PrivacySetting { enabled: false })
    );
    assert_eq!(
        settings.read_receipts,
        Some(PrivacySetting { enabled: true })
    );
    assert_eq!(settings.delivery_receipts, None);
    assert_eq!(
        custom_of(&u),
        json!({}),
        "privacy_settings is a field, not custom data"
    );
    assert_eq!(srv.get_ok("u1").await, u);
}

#[tokio::test]
async fn setting_a_path_and_unsetting_its_parent_is_rejected() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_custom(json!({"a": {"b": {"c": 1, "d": 2}}}))])
        .await;
    let before = srv.get_ok("u1").await;

    let status = expect_err(
        srv.update_partial([partial("u1", json!({"a.b.c": 5}), &["a.b"])])
            .await,
    );

    assert_invalid_user(&status, 0, "u1", "");
    assert_eq!(
        srv.get_ok("u1").await,
        before,
        "a rejected update changes nothing"
    );
}

#[tokio::test]
async fn unknown_id_is_not_found_and_nothing_is_written() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("known").with_name("Known")]).await;
    let before = srv.all_users().await;

    let status = expect_err(
        srv.update_partial([partial("ghost", json!({"name": "Boo"}), &[])])
            .await,
    );
    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");

    // All or nothing: the known user in the same request is not changed either.
    let status = expect_err(
        srv.update_partial([
            partial("known", json!({"name": "Changed"}), &[]),
            partial("ghost", json!({"name": "Boo"}), &[]),
        ])
        .await,
    );
    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");

    assert_eq!(
        srv.all_users().await,
        before,
        "a partial update never creates users"
    );
    assert_reason(
        &expect_err(srv.get("ghost").await),
        Code::NotFound,
        "USER_NOT_FOUND",
    );
}

#[tokio::test]
async fn unknown_set_keys_go_into_custom_and_field_keys_change_fields() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")
        .with_name("One")
        .with_custom(json!({"keep": true}))])
        .await;

    let u = srv
        .update_partial_ok(partial(
            "u1",
            json!({
                "color": "red",
                "language": "fr",
                "role": "admin",
                "invisible": true,
                "teams": ["red", "blue"],
                "teams_role": {"red": "admin"},
                "image": "https://example.com/u1.png",
                "custom.name": "custom, not the field",
            }),
            &[],
        ))
        .await;

    assert_eq!(
        custom_of(&u),
        json!({"keep": true, "color": "red", "name": "custom, not the field"})
    );
    assert_eq!(
        u.name.as_deref(),
        Some("One"),
        "`custom.name` does not touch the name field"
    );
    assert_eq!(u.language, "fr");
    assert_eq!(u.role, "admin");
    assert!(u.invisible);
    assert_eq!(u.teams, ["red", "blue"]);
    assert_eq!(
        u.teams_role.into_iter().collect::<BTreeMap<_, _>>(),
        BTreeMap::from([("red".to_owned(), "admin".to_owned())])
    );
    assert_eq!(u.image.as_deref(), Some("https://example.com/u1.png"));
}

#[tokio::test]
async fn unset_name_clears_the_name_and_keeps_the_rest() {
    let srv = Launch::new().start().await;
    let before = srv
        .upsert_ok([user("u1")
            .with_name("One")
            .with_image("img")
            .with_custom(json!({"k": "v"}))])
        .await
        .remove("u1")
        .expect("u1 returned");

    let u = srv
        .update_partial_ok(partial("u1", json!({}), &["name"]))
        .await;

    assert_eq!(u.name, None);
    assert_eq!(u.image.as_deref(), Some("img"));
    assert_eq!(custom_of(&u), json!({"k": "v"}));
    assert_eq!(u.created_at, before.created_at);
    assert!(micros(&u.updated_at) >= micros(&before.updated_at));
    assert_eq!(srv.get_ok("u1").await.name, None);
}

#[tokio::test]
async fn unset_custom_key_removes_it() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_custom(json!({"a": 1, "b": 2}))])
        .await;

    let u = srv
        .update_partial_ok(partial("u1", json!({}), &["a"]))
        .await;

    assert_eq!(custom_of(&u), json!({"b": 2}));
}

#[tokio::test]
async fn a_partial_update_that_makes_the_user_invalid_is_rejected() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_name("One"), user("u2")])
        .await;
    let before = srv.all_users().await;

    let status = expect_err(
        srv.update_partial([
            partial("u2", json!({"name": "Two"}), &[]),
            partial("u1", json!({"role": "wizard"}), &[]),
        ])
        .await,
    );

    assert_invalid_user(&status, 1, "u1", ".role");
    assert_eq!(srv.all_users().await, before, "neither user was changed");
}

#[tokio::test]
async fn several_users_in_one_request_are_all_updated() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2")]).await;

    let users = srv
        .update_partial([
            partial("u1", json!({"n": 1}), &[]),
            partial("u2", json!({"n": 2}), &[]),
        ])
        .await
        .expect("UpdateUsersPartial");

    assert_eq!(custom_of(&users["u1"]), json!({"n": 1}));
    assert_eq!(custom_of(&users["u2"]), json!({"n": 2}));
    assert_eq!(custom_of(&srv.get_ok("u2").await), json!({"n": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_partial_updates_of_different_keys_all_survive() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("hot")
        .with_name("Hot")
        .with_custom(json!({"original": true}))])
        .await;

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let mut client = srv.users();
            tokio::spawn(async move {
                let update = partial("hot", json!({ format!("k{i:02}"): i }), &[]);
                client
                    .update_users_partial(roster::pb::UpdateUsersPartialRequest {
                        users: vec![update],
                    })
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.expect("task panicked");
        if let Err(status) = result {
            panic!("partial update {i} failed: {status:?}");
        }
    }

    let u = srv.get_ok("hot").await;
    let custom = custom_of(&u);
    let missing: Vec<String> = (0..50)
        .map(|i| format!("k{i:02}"))
        .filter(|k| custom.get(k).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "lost updates: {missing:?} missing from {custom}"
    );
    for i in 0..50 {
        assert_eq!(custom[format!("k{i:02}")], json!(i));
    }
    assert_eq!(custom["original"], json!(true));
    assert_eq!(u.name.as_deref(), Some("Hot"));
}

#[tokio::test]
async fn rejects_empty_oversized_and_duplicate_batches() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_name("One")]).await;
    let before = srv.all_users().await;

    let empty = expect_err(srv.update_partial([]).await);
    let oversized = expect_err(
        srv.update_partial((0..101).map(|i| partial(&format!("p{i:03}"), json!({"a": 1}), &[])))
            .await,
    );
    let duplicate = expect_err(
        srv.update_partial([
            partial("u1", json!({"a": 1}), &[]),
            partial("u1", json!({"b": 2}), &[]),
        ])
        .await,
    );

    assert_invalid(&empty, "users");
    assert_invalid(&oversized, "users");
    assert_invalid_user(&duplicate, 1, "u1", "");
    assert_eq!(srv.all_users().await, before);
}

#[tokio::test]
async fn set_values_must_fit_their_fields() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_name("One").with_custom(json!({"k": 1}))])
        .await;
    let before = srv.get_ok("u1").await;
    let cases = [
        json!({"invisible": "yes"}),
        json!({"name": 5}),
        json!({"teams": "red"}),
        json!({"language": "x".repeat(17)}),
        json!({"privacy_settings": {"typing_indicators": {"enabled": "yes"}}}),
        json!({"revoke_tokens_issued_before": "not a time"}),
        json!({"push_notifications": {"disabled_until": 5}}),
        json!({"a..b": 1}),
        json!({"": 1}),
        json!({"k.": 1}),
    ];

    let mut failures = Vec::new();
    for set in cases {
        match srv.update_partial([partial("u1", set.clone(), &[])]).await {
            Err(status) if status.code() == Code::InvalidArgument => {}
            other => failures.push(format!("{set}: {:?}", other.map(|_| "OK"))),
        }
    }

    assert!(
        failures.is_empty(),
        "not INVALID_ARGUMENT:\n{}",
        failures.join("\n")
    );
    assert_eq!(srv.get_ok("u1").await, before);
}

#[tokio::test]
async fn timestamps_are_set_from_rfc_3339_strings() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    let new_year_2030 = prost_types::Timestamp {
        seconds: 1_893_456_000,
        nanos: 0,
    };

    let u = srv
        .update_partial_ok(partial(
            "u1",
            json!({
                "revoke_tokens_issued_before": "2030-01-01T00:00:00Z",
                "push_notifications": {"disabled": true, "disabled_until": "2030-01-01T01:00:00+01:00"},
            }),
            &[],
        ))
        .await;

    assert_eq!(u.revoke_tokens_issued_before, Some(new_year_2030));
    let push = u.push_notifications.expect("push_notifications set");
    assert!(push.disabled);
    assert_eq!(push.disabled_until, Some(new_year_2030));
    assert_eq!(custom_of(&u), json!({}));
    assert_eq!(
        srv.get_ok("u1").await.revoke_tokens_issued_before,
        Some(new_year_2030)
    );
}

/// The one field violation of an INVALID_ARGUMENT: its field path and description.
fn only_violation(status: &tonic::Status) -> (String, String) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("BadRequest");
    assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
    let v = &bad.field_violations[0];
    (v.field.clone(), v.description.clone())
}

#[tokio::test]
async fn custom_keys_with_a_dot_are_refused_at_any_depth() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1").with_custom(json!({"keep": 1}))])
        .await;

    let replaced = [
        (json!({"a.b": 1}), "users[u1].custom", "\"a.b\""),
        (json!({"x": {"y.z": true}}), "users[u1].custom.x", "\"y.z\""),
        (
            json!({"x": [0, {"v.w": "s"}]}),
            "users[u1].custom.x[1]",
            "\"v.w\"",
        ),
    ];
    for (custom, field, key) in replaced {
        let status = expect_err(srv.upsert([user("u1").with_custom(custom)]).await);
        let (at, why) = only_violation(&status);
        assert_eq!(at, field);
        assert!(why.contains(key), "{why}");
    }
    let created = expect_err(
        srv.upsert([user("u2").with_custom(json!({"p.q": 1}))])
            .await,
    );
    assert_eq!(only_violation(&created).0, "users[u2].custom");
    let partial_sets = [
        (json!({"custom": {"a.b": 1}}), "users[0].set.custom"),
        (json!({"obj": {"k.v": 1}}), "users[0].set.obj"),
        (
            json!({"custom.obj": {"in": {"k.v": 1}}}),
            "users[0].set.custom.obj.in",
        ),
    ];
    for (set, field) in partial_sets {
        let status = expect_err(srv.update_partial([partial("u1", set, &[])]).await);
        assert_eq!(only_violation(&status).0, field);
    }

    assert_eq!(
        custom_of(&srv.get_ok("u1").await),
        json!({"keep": 1}),
        "nothing changed"
    );
    let missing = expect_err(srv.get("u2").await);
    assert_eq!(missing.code(), Code::NotFound);
    // Nested keys without dots stay what dotted paths reach.
    srv.update_partial_ok(partial("u1", json!({"a": {"b": 1}}), &[]))
        .await;
    assert_eq!(
        srv.find(json!({"a.b": 1})).await.expect("QueryUsers"),
        ["u1"]
    );
}
