//! Data written under an earlier schema survives the last migrations: the database is migrated
//! three steps short of the newest schema (the last three change what rows mean: m0005 the count
//! of a task's claims, m0006 and m0007 the feed's clock), rows are written into it with raw SQL as an older
//! roster would have left them (users with custom data and settings, a custom role, a finished
//! and an unfinished task, change-feed events), then roster starts (and migrates, as it does on
//! every start) and the rows are read back through the API. Fails if the last migrations lose or
//! mangle what was there.

use std::sync::Arc;

use migrations::{Migrator, MigratorTrait};
use prost_types::Timestamp;
use roster::pb::{
    GetTaskRequest, GetUserRequest, ListRolesRequest, PrivacySetting, PrivacySettings,
    PushNotificationSettings, QueryUsersRequest, TaskStatus, User,
};
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

use crate::support::*;

/// Instants as roster stores them (microseconds since the epoch), fixed so the test can compare.
const CREATED: i64 = 1_600_000_000_000_000;
const UPDATED: i64 = 1_600_000_100_000_000;
const LAST_ACTIVE: i64 = 1_600_000_200_000_000;
const REVOKED_BEFORE: i64 = 1_600_000_300_000_000;
const DEACTIVATED: i64 = 1_600_000_400_000_000;
const DELETED: i64 = 1_600_000_500_000_000;
/// 2100-01-01: still in the future whenever the test runs.
const PUSH_DISABLED_UNTIL: i64 = 4_102_444_800_000_000;
const TASK_ID: &str = "0b7f2d7e-5c1a-4e8e-9d2a-6f3c1e0a0001";
/// An unfinished task that older binaries claimed many times (they counted every claim).
const LONG_TASK_ID: &str = "0b7f2d7e-5c1a-4e8e-9d2a-6f3c1e0a0002";

/// Rows an older roster left behind. Literals only (no bound parameters), so one text works on
/// SQLite (JSON as text) and PostgreSQL (an untyped literal becomes `jsonb`).
/// `recent`: when the task finished and the event happened, close enough to now that the
/// retention purges at start leave them.
/// `ahead`: the time of an event an older replica stamped with a clock running ahead.
fn old_rows(recent: i64, ahead: i64) -> Vec<String> {
    vec![
        format!(
            "INSERT INTO roles (name, builtin, channel_level, created_at) \
             VALUES ('curator', false, false, {CREATED})"
        ),
        format!(
            "INSERT INTO users (id, name, image, role, custom, language, invisible, teams, \
             teams_role, privacy_settings, push_notifications, created_at, updated_at, \
             deactivated_at, deleted_at, last_active, revoke_tokens_issued_before, \
             avg_response_time) VALUES ('old-full', 'Ada Lovelace', \
             'https://img.example/ada.png', 'curator', \
             '{{\"color\": \"blue\", \"score\": 2.5, \"nested\": {{\"n\": 1, \"list\": [1, \"two\", true, null]}}, \"name\": \"ünïcödé ✓\"}}', \
             'fr', true, '[\"red\", \"blue\"]', '{{\"red\": \"admin\"}}', \
             '{{\"typing_indicators\": {{\"enabled\": false}}, \"read_receipts\": {{\"enabled\": true}}}}', \
             '{{\"disabled\": true, \"disabled_until\": {PUSH_DISABLED_UNTIL}}}', \
             {CREATED}, {UPDATED}, NULL, NULL, {LAST_ACTIVE}, {REVOKED_BEFORE}, 42)"
        ),
        format!(
            "INSERT INTO users (id, name, image, role, custom, language, invisible, teams, \
             teams_role, privacy_settings, push_notifications, created_at, updated_at, \
             deactivated_at, deleted_at, last_active, revoke_tokens_issued_before, \
             avg_response_time) VALUES ('old-bare', NULL, NULL, 'user', '{{}}', '', false, \
             '[]', '{{}}', NULL, NULL, {}, {DEACTIVATED}, {DEACTIVATED}, NULL, NULL, NULL, NULL)",
            CREATED + 1
        ),
        format!(
            "INSERT INTO users (id, name, image, role, custom, language, invisible, teams, \
             teams_role, privacy_settings, push_notifications, created_at, updated_at, \
             deactivated_at, deleted_at, last_active, revoke_tokens_issued_before, \
             avg_response_time) VALUES ('old-deleted', 'Gone', NULL, 'user', \
             '{{\"kept\": \"yes\"}}', 'de', false, '[]', '{{}}', NULL, NULL, {}, {DELETED}, \
             NULL, {DELETED}, NULL, NULL, NULL)",
            CREATED + 2
        ),
        format!(
            "INSERT INTO tasks (id, kind, status, request_id, payload, total, done, error_type, \
             error_description, cancel_requested, lease_owner, lease_expires_at, not_before, \
             attempts, version, created_at, updated_at, started_at, finished_at) VALUES \
             ('{TASK_ID}', 'deactivate_users', 'completed', NULL, '{{\"type\": \"V1\"}}', 1, 1, \
             NULL, NULL, false, NULL, NULL, NULL, 1, 3, {recent}, {recent}, {recent}, \
             {recent})"
        ),
        format!(
            "INSERT INTO task_items (task_id, position, user_id, status, result, updated_at) \
             VALUES ('{TASK_ID}', 0, 'old-bare', 'ok', '{{\"status\": \"ok\"}}', {recent})"
        ),
        format!(
            "INSERT INTO tasks (id, kind, status, request_id, payload, total, done, error_type, \
             error_description, cancel_requested, lease_owner, lease_expires_at, not_before, \
             attempts, version, created_at, updated_at, started_at, finished_at) VALUES \
             ('{LONG_TASK_ID}', 'deactivate_users', 'running', NULL, '{{\"type\": \"V1\"}}', \
             1, 0, NULL, NULL, false, NULL, NULL, NULL, 9, 12, {recent}, {recent}, {recent}, \
             NULL)"
        ),
        format!(
            "INSERT INTO task_items (task_id, position, user_id, status, result, updated_at) \
             VALUES ('{LONG_TASK_ID}', 0, 'old-bare', 'pending', NULL, {recent})"
        ),
        format!(
            "INSERT INTO user_events (kind, user_id, actor, caller, created_by_id, at, snapshot, \
             role) VALUES ('user.created', 'old-full', 'admin-1', 'svc-old', 'admin-1', {recent}, \
             NULL, NULL)"
        ),
        format!(
            "INSERT INTO user_events (kind, user_id, actor, caller, created_by_id, at, snapshot, \
             role) VALUES ('user.updated', 'old-full', 'admin-1', NULL, NULL, {ahead}, NULL, NULL)"
        ),
    ]
}

fn ts(micros: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).expect("nanos fit"),
    })
}

#[track_caller]
fn assert_full_user(user: &User, how: &str) {
    assert_eq!(user.id, "old-full", "{how}");
    assert_eq!(user.name.as_deref(), Some("Ada Lovelace"), "{how}: name");
    assert_eq!(
        user.image.as_deref(),
        Some("https://img.example/ada.png"),
        "{how}: image"
    );
    assert_eq!(user.role, "curator", "{how}: role");
    assert_eq!(
        custom_of(user),
        json!({
            "color": "blue",
            "score": 2.5,
            "nested": {"n": 1, "list": [1, "two", true, null]},
            "name": "ünïcödé ✓",
        }),
        "{how}: custom"
    );
    assert_eq!(user.language, "fr", "{how}: language");
    assert!(user.invisible, "{how}: invisible");
    assert_eq!(user.teams, ["red", "blue"], "{how}: teams");
    assert_eq!(
        user.teams_role.get("red").map(String::as_str),
        Some("admin"),
        "{how}: teams_role"
    );
    assert_eq!(user.teams_role.len(), 1, "{how}: teams_role");
    assert_eq!(
        user.privacy_settings,
        Some(PrivacySettings {
            typing_indicators: Some(PrivacySetting { enabled: false }),
            read_receipts: Some(PrivacySetting { enabled: true }),
            delivery_receipts: None,
        }),
        "{how}: privacy_settings"
    );
    assert_eq!(
        user.push_notifications,
        Some(PushNotificationSettings {
            disabled: true,
            disabled_until: ts(PUSH_DISABLED_UNTIL),
        }),
        "{how}: push_notifications"
    );
    assert_eq!(micros(&user.created_at), CREATED, "{how}: created_at");
    assert_eq!(micros(&user.updated_at), UPDATED, "{how}: updated_at");
    assert_eq!(user.deactivated_at, None, "{how}: deactivated_at");
    assert_eq!(user.deleted_at, None, "{how}: deleted_at");
    assert_eq!(micros(&user.last_active), LAST_ACTIVE, "{how}: last_active");
    assert_eq!(
        micros(&user.revoke_tokens_issued_before),
        REVOKED_BEFORE,
        "{how}: revoke_tokens_issued_before"
    );
    assert_eq!(user.avg_response_time, Some(42), "{how}: avg_response_time");
    // What the newer schema added reads as its defaults on an old row.
    assert!(!user.banned, "{how}: banned");
    assert!(!user.shadow_banned, "{how}: shadow_banned");
    assert_eq!(user.ban_expires, None, "{how}: ban_expires");
    assert!(user.devices.is_empty(), "{how}: devices");
    assert!(user.blocked_user_ids.is_empty(), "{how}: blocked_user_ids");
}

#[track_caller]
fn assert_bare_user(user: &User, how: &str) {
    assert_eq!(user.id, "old-bare", "{how}");
    assert_eq!(user.name, None, "{how}: name");
    assert_eq!(user.image, None, "{how}: image");
    assert_eq!(user.role, "user", "{how}: role");
    assert_eq!(custom_of(user), json!({}), "{how}: custom");
    assert!(!user.invisible, "{how}: invisible");
    assert!(user.teams.is_empty(), "{how}: teams");
    assert!(user.teams_role.is_empty(), "{how}: teams_role");
    assert_eq!(micros(&user.created_at), CREATED + 1, "{how}: created_at");
    assert_eq!(micros(&user.updated_at), DEACTIVATED, "{how}: updated_at");
    assert_eq!(
        micros(&user.deactivated_at),
        DEACTIVATED,
        "{how}: deactivated_at"
    );
    assert_eq!(user.deleted_at, None, "{how}: deleted_at");
    assert_eq!(user.avg_response_time, None, "{how}: avg_response_time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_under_the_previous_schema_read_back_the_same_after_the_last_migration() {
    let db = Arc::new(TestDb::create().await);
    let steps = Migrator::migrations().len();
    assert!(
        steps >= 6,
        "the old rows need users, roles, tasks and events (migrations 1-3) and three migrations \
         after them; there are {steps}"
    );
    let previous = u32::try_from(steps - 3).expect("few migrations");
    let conn = Database::connect(db.url()).await.expect("connect");
    Migrator::up(&conn, Some(previous))
        .await
        .unwrap_or_else(|e| panic!("apply the first {previous} migrations: {e}"));
    let applied = Migrator::get_applied_migrations(&conn)
        .await
        .expect("list applied migrations")
        .len();
    assert_eq!(
        applied,
        steps - 3,
        "three migrations short of the newest schema"
    );
    let recent = now_micros() - 60_000_000;
    let ahead = now_micros() + 600_000_000;
    for sql in old_rows(recent, ahead) {
        conn.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("close");

    // roster migrates on start, as in production.
    let srv = Launch::new().on(Arc::clone(&db)).start().await;
    let conn = Database::connect(db.url()).await.expect("connect");
    let applied = Migrator::get_applied_migrations(&conn)
        .await
        .expect("list applied migrations")
        .len();
    conn.close().await.expect("close");
    assert_eq!(
        applied, steps,
        "roster applied the last migrations on start"
    );

    // GetUser.
    assert_full_user(&srv.get_ok("old-full").await, "GetUser old-full");
    assert_bare_user(&srv.get_ok("old-bare").await, "GetUser old-bare");
    let deleted = srv
        .users()
        .get_user(GetUserRequest {
            id: "old-deleted".to_owned(),
            include_deleted: true,
        })
        .await
        .expect("GetUser old-deleted with include_deleted")
        .into_inner()
        .user
        .expect("GetUserResponse without a user");
    assert_eq!(deleted.name.as_deref(), Some("Gone"));
    assert_eq!(deleted.language, "de");
    assert_eq!(custom_of(&deleted), json!({"kept": "yes"}));
    assert_eq!(micros(&deleted.deleted_at), DELETED, "deleted_at");

    // QueryUsers: the deactivated user only when asked for, the deleted one never; each user as
    // GetUser shows it.
    let listed = srv
        .query(QueryUsersRequest {
            limit: 100,
            ..QueryUsersRequest::default()
        })
        .await
        .expect("QueryUsers");
    assert_eq!(ids(&listed.users), ["old-full"], "active users");
    assert_full_user(&listed.users[0], "QueryUsers");
    let all = srv.all_users().await;
    assert_eq!(
        ids(&all),
        ["old-bare", "old-full"],
        "with deactivated users"
    );
    assert_bare_user(&all[0], "QueryUsers include_deactivated_users");
    assert_full_user(&all[1], "QueryUsers include_deactivated_users");
    let by_custom = srv
        .find(json!({"custom.color": "blue"}))
        .await
        .expect("QueryUsers on custom data");
    assert_eq!(by_custom, ["old-full"], "a filter on custom data");
    let by_role = srv
        .find(json!({"role": "curator"}))
        .await
        .expect("QueryUsers by role");
    assert_eq!(by_role, ["old-full"], "a filter on the custom role");

    // The custom role, the finished task and the feed event.
    let roles = srv
        .roles()
        .list_roles(ListRolesRequest {})
        .await
        .expect("ListRoles")
        .into_inner()
        .roles;
    let curator = roles
        .iter()
        .find(|role| role.name == "curator")
        .unwrap_or_else(|| panic!("the custom role survives: {roles:?}"));
    assert!(!curator.builtin, "{curator:?}");
    assert_eq!(
        roles.len(),
        7,
        "six built-in roles and the custom one: {roles:?}"
    );
    let task = tasks_client(&srv.channel())
        .get_task(GetTaskRequest {
            task_id: TASK_ID.to_owned(),
        })
        .await
        .expect("GetTask of the old task")
        .into_inner()
        .task
        .expect("GetTask without a task");
    assert_eq!(task.status(), TaskStatus::Completed, "{}", brief(&task));
    assert_eq!(task.kind, "deactivate_users", "{}", brief(&task));
    assert_completed_ok(&task, &["old-bare".to_owned()]);
    assert_eq!(micros(&task.finished_at), recent, "finished_at");
    // An unfinished task that older binaries claimed nine times (each claim counted) runs to its
    // end: the count of claims without progress starts afresh with this schema.
    let long = wait_finished(&srv.channel(), LONG_TASK_ID).await;
    assert_eq!(long.status(), TaskStatus::Completed, "{}", brief(&long));
    assert_completed_ok(&long, &["old-bare".to_owned()]);
    let events = srv.events(&[], 1).await;
    assert_eq!(
        events[0].kind,
        "user.created",
        "{:?}",
        brief_event(&events[0])
    );
    assert_eq!(
        events[0].user_id,
        "old-full",
        "{:?}",
        brief_event(&events[0])
    );
    assert_eq!(events[0].actor, "admin-1", "{:?}", brief_event(&events[0]));
    assert_eq!(events[0].caller.as_deref(), Some("svc-old"), "caller");
    assert_eq!(
        events[0].created_by_id.as_deref(),
        Some("admin-1"),
        "created_by_id"
    );
    assert_eq!(micros(&events[0].at), recent, "event time");
    // The feed's clock starts at the newest event already there: a change made now is not
    // stamped before it, though the old replica's clock ran 10 minutes ahead.
    srv.upsert_ok([user("after-upgrade")]).await;
    let events = srv.events(&[], 3).await;
    assert_eq!(
        micros(&events[1].at),
        ahead,
        "{:?}",
        brief_event(&events[1])
    );
    assert_eq!(
        events[2].user_id,
        "after-upgrade",
        "{:?}",
        brief_event(&events[2])
    );
    assert!(
        micros(&events[2].at) >= ahead,
        "a change after the upgrade is stamped {} before the newest old event",
        ahead - micros(&events[2].at)
    );

    srv.stop().await.expect("run returns Ok after shutdown");
}
