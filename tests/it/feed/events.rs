//! What events say: kind, user, actor, time and the user after the change; filters and errors;
//! replicas.

use super::*;

/// Waits for a task to complete.
async fn completed(ch: &Channel, task_id: &str) {
    let task = wait_finished(ch, task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Completed, "{}", brief(&task));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_kind_user_actor_time_and_the_user_after_the_change() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let mut users = UserServiceClient::new(ch.clone());
    let mut roles = RoleServiceClient::new(ch.clone());
    let t0 = now_micros();

    roles
        .create_role(CreateRoleRequest {
            name: "editor".into(),
        })
        .await
        .expect("CreateRole");
    upsert_named(&ch, "eve", "Eve").await;
    upsert_named(&ch, "eve", "Eve 2").await;
    srv.update_partial_ok(partial("eve", json!({"language": "fr"}), &[]))
        .await;
    let task = users
        .deactivate_user(DeactivateUserRequest {
            user_id: "eve".into(),
            mark_messages_deleted: false,
            created_by_id: Some("mod-1".into()),
        })
        .await
        .expect("DeactivateUser")
        .into_inner()
        .task_id;
    completed(&ch, &task).await;
    let task = users
        .reactivate_user(ReactivateUserRequest {
            user_id: "eve".into(),
            ..ReactivateUserRequest::default()
        })
        .await
        .expect("ReactivateUser")
        .into_inner()
        .task_id;
    completed(&ch, &task).await;
    let task = users
        .delete_users(DeleteUsersRequest {
            user_ids: strings(&["eve"]),
            created_by_id: Some("admin-1".into()),
            ..DeleteUsersRequest::default()
        })
        .await
        .expect("DeleteUsers soft")
        .into_inner()
        .task_id;
    completed(&ch, &task).await;
    let task = users
        .restore_users(RestoreUsersRequest {
            user_ids: strings(&["eve"]),
            created_by_id: None,
            request_id: None,
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    completed(&ch, &task).await;
    let task = users
        .delete_users(DeleteUsersRequest {
            user_ids: strings(&["eve"]),
            user: "pruning".into(),
            created_by_id: Some("admin-2".into()),
            ..DeleteUsersRequest::default()
        })
        .await
        .expect("DeleteUsers pruning")
        .into_inner()
        .task_id;
    completed(&ch, &task).await;
    upsert_named(&ch, "hal", "Hal").await;
    let task = delete_users(&ch, &strings(&["hal"]), "hard").await;
    completed(&ch, &task).await;
    roles
        .delete_role(DeleteRoleRequest {
            name: "editor".into(),
        })
        .await
        .expect("DeleteRole");

    let events = Feed::after(&ch, 0)
        .await
        .until(LIVE, |e| e.kind == "role.deleted")
        .await;
    let t1 = now_micros();
    assert_strictly_increasing(&events);
    let summary: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.user_id.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("role.created", "", "server"),
            ("user.created", "eve", "server"),
            ("user.updated", "eve", "server"),
            ("user.updated", "eve", "server"),
            ("user.deactivated", "eve", "mod-1"),
            ("user.reactivated", "eve", "server"),
            ("user.deleted", "eve", "admin-1"),
            ("user.restored", "eve", "server"),
            ("user.deleted", "eve", "admin-2"),
            ("user.pruned", "eve", "admin-2"),
            ("user.created", "hal", "server"),
            ("user.deleted", "hal", "server"),
            ("user.hard_deleted", "hal", "server"),
            ("role.deleted", "", "server"),
        ]
    );
    let mut last_at = 0;
    for e in &events {
        let at = ts_micros(&e.at, "event time");
        assert!(
            at >= t0 - 1_000_000 && at <= t1 + 1_000_000,
            "time of {:?} is now-ish",
            brief_event(e)
        );
        assert!(
            at >= last_at,
            "times follow sequence order: {:?}",
            brief_event(e)
        );
        last_at = at;
        assert_eq!(e.caller, None, "no authenticated caller in tests");
        let expected_created_by = (e.actor != "server").then(|| e.actor.clone());
        assert_eq!(e.created_by_id, expected_created_by, "{:?}", brief_event(e));
        match e.kind.as_str() {
            "role.created" | "role.deleted" => {
                assert_eq!(e.role.as_deref(), Some("editor"));
                assert!(e.user.is_none(), "no user on a role event");
            }
            "user.hard_deleted" => {
                assert!(e.user.is_none(), "no user after a hard deletion");
                assert_eq!(e.role, None);
            }
            _ => {
                let u = e
                    .user
                    .as_ref()
                    .unwrap_or_else(|| panic!("{:?} should carry the user", brief_event(e)));
                assert_eq!(u.id, e.user_id);
                assert_eq!(e.role, None);
            }
        }
    }
    let user_of = |i: usize| events[i].user.clone().expect("user");
    assert_eq!(user_of(1).name.as_deref(), Some("Eve"));
    assert_eq!(user_of(2).name.as_deref(), Some("Eve 2"));
    assert_eq!(user_of(3).language, "fr");
    assert!(
        user_of(4).deactivated_at.is_some(),
        "deactivated after the change"
    );
    assert!(
        user_of(5).deactivated_at.is_none(),
        "reactivated after the change"
    );
    assert!(user_of(6).deleted_at.is_some(), "deleted after the change");
    assert!(user_of(7).deleted_at.is_none(), "restored after the change");
    assert!(user_of(8).deleted_at.is_some());
    assert_eq!(user_of(8).name.as_deref(), Some("Eve 2"), "not pruned yet");
    assert!(user_of(9).deleted_at.is_some());
    assert_eq!(user_of(9).name, None, "pruned after the change");
    assert!(user_of(11).deleted_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_and_user_ids_filter_the_feed() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    for id in ["f1", "f2", "f3"] {
        upsert_named(&ch, id, id).await;
    }
    upsert_named(&ch, "f1", "f1 again").await;
    let task = delete_users(&ch, &strings(&["f2"]), "soft").await;
    completed(&ch, &task).await;
    RoleServiceClient::new(ch.clone())
        .create_role(CreateRoleRequest {
            name: "marker".into(),
        })
        .await
        .expect("CreateRole");
    let all = Feed::after(&ch, 0)
        .await
        .until(LIVE, |e| e.kind == "role.created")
        .await;
    assert_eq!(
        all.len(),
        6,
        "{:?}",
        all.iter().map(brief_event).collect::<Vec<_>>()
    );

    let cases: [(&[&str], &[&str]); 5] = [
        (&["user.created"], &[]),
        (&[], &["f1"]),
        (&["user.updated", "user.deleted"], &["f1", "f2"]),
        (&["role.created"], &[]),
        (&["user.deleted"], &["f3"]),
    ];
    for (kinds, user_ids) in cases {
        let expected: Vec<i64> = all
            .iter()
            .filter(|e| kinds.is_empty() || kinds.contains(&e.kind.as_str()))
            .filter(|e| user_ids.is_empty() || user_ids.contains(&e.user_id.as_str()))
            .map(|e| e.sequence)
            .collect();
        let mut feed = Feed::open(&ch, watch_request(0, kinds, user_ids))
            .await
            .unwrap_or_else(|s| panic!("WatchUserEvents {kinds:?} {user_ids:?}: {s:?}"));
        let got: Vec<i64> = feed
            .take(expected.len(), LIVE)
            .await
            .iter()
            .map(|e| e.sequence)
            .collect();
        assert_eq!(got, expected, "kinds {kinds:?} user_ids {user_ids:?}");
        feed.expect_quiet(
            Duration::from_millis(300),
            &format!("nothing else matches kinds {kinds:?} user_ids {user_ids:?}"),
        )
        .await;
    }

    // A filtered follower keeps following live.
    let mut f3 = Feed::open(&ch, watch_request(0, &["user.updated"], &["f3"]))
        .await
        .expect("WatchUserEvents f3 updates");
    upsert_named(&ch, "f1", "not for f3").await;
    upsert_named(&ch, "f3", "f3 renamed").await;
    let e = f3.next(LIVE).await;
    assert_eq!(
        (e.user_id.as_str(), e.kind.as_str()),
        ("f3", "user.updated")
    );
    assert_eq!(snapshot_name(&e), "f3 renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_or_a_negative_sequence_is_invalid_argument() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let status = watch_error(
        &ch,
        watch_request(0, &["user.created", "user.exploded"], &[]),
        LIVE,
    )
    .await;
    assert_invalid(&status, "kinds");
    let status = watch_error(&ch, watch_request(-1, &[], &[]), LIVE).await;
    assert_invalid(&status, "after_sequence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_one_replica_sees_writes_made_on_another() {
    let a = Launch::new().start().await;
    let b = Launch::new().on(a.db()).start().await;
    let mut feed = Feed::after(&a.channel(), 0).await;
    let started = Instant::now();
    upsert_named(&b.channel(), "remote", "written on b").await;
    let e = feed.next(LIVE).await;
    eprintln!(
        "a change made on another replica arrived after {:?}",
        started.elapsed()
    );
    assert_eq!(e.user_id, "remote");
    assert_eq!(snapshot_name(&e), "written on b");
}
