//! Lifecycle RPCs end to end: deactivate, reactivate, delete (soft, pruning, hard), restore, and
//! what GetUser and QueryUsers show afterwards.

use roster::pb::{
    DeactivateUserRequest, DeactivateUsersRequest, DeleteUsersRequest, ListTasksRequest,
    ReactivateUserRequest, ReactivateUsersRequest, RestoreUsersRequest, TaskStatus,
};
use serde_json::json;
use tonic::Code;

use crate::support::*;

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

async fn task_count(srv: &Server) -> usize {
    list_all_tasks(&srv.channel(), TaskStatus::Unspecified, "", 100)
        .await
        .len()
}

#[tokio::test]
async fn deactivate_user_sets_deactivated_at_and_a_second_deactivate_is_a_no_op() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["u1", "u2"])).await;

    let first = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "u1".into(),
            mark_messages_deleted: true,
            created_by_id: Some("admin-1".into()),
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    let returned = first.user.expect("DeactivateUser returns the user");
    assert_eq!(returned.id, "u1");
    let deactivated_at = ts_micros(&returned.deactivated_at, "deactivated_at in the response");
    assert!(
        !first.task_id.is_empty(),
        "DeactivateUser returns a task id"
    );
    let task = wait_completed_ok(&ch, &first.task_id, &strings(&["u1"])).await;
    assert_eq!(task.kind, "deactivate_users");

    let got = srv.get_ok("u1").await;
    assert_eq!(
        ts_micros(&got.deactivated_at, "deactivated_at from GetUser"),
        deactivated_at
    );
    assert_eq!(got.deleted_at, None);
    assert_eq!(got.name.as_deref(), Some("Name of u1"), "data kept");
    assert_eq!(query_ids(&ch, false).await, ["u2"]);
    assert_eq!(query_ids(&ch, true).await, ["u1", "u2"]);
    assert_eq!(
        srv.find(json!({"id": "u1"}))
            .await
            .expect("QueryUsers by id"),
        Vec::<String>::new(),
        "a deactivated user is hidden even when asked for by id"
    );

    // Again: not an error, and nothing changes.
    let again = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "u1".into(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("deactivating a deactivated user is not an error")
        .into_inner();
    let returned = again.user.expect("the user");
    assert_eq!(
        ts_micros(&returned.deactivated_at, "deactivated_at after no-op"),
        deactivated_at
    );
    assert_eq!(
        returned.updated_at, got.updated_at,
        "a no-op deactivate does not touch updated_at"
    );
    if !again.task_id.is_empty() {
        wait_completed_ok(&ch, &again.task_id, &strings(&["u1"])).await;
    }
    let got = srv.get_ok("u1").await;
    assert_eq!(
        ts_micros(&got.deactivated_at, "deactivated_at"),
        deactivated_at
    );
    assert_eq!(query_ids(&ch, false).await, ["u2"]);
}

#[tokio::test]
async fn reactivate_user_clears_deactivated_at_renames_and_is_a_no_op_on_an_active_user() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["u1"])).await;
    let deactivated = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "u1".into(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    wait_completed_ok(&ch, &deactivated.task_id, &strings(&["u1"])).await;

    let reactivated = srv
        .users()
        .reactivate_user(ReactivateUserRequest {
            user_id: "u1".into(),
            restore_messages: true,
            name: Some("Back Again".into()),
            created_by_id: None,
        })
        .await
        .expect("ReactivateUser")
        .into_inner();
    let returned = reactivated.user.expect("ReactivateUser returns the user");
    assert_eq!(returned.deactivated_at, None);
    assert_eq!(returned.name.as_deref(), Some("Back Again"));
    let task = wait_completed_ok(&ch, &reactivated.task_id, &strings(&["u1"])).await;
    assert_eq!(task.kind, "reactivate_users");
    let got = srv.get_ok("u1").await;
    assert_eq!(got.deactivated_at, None);
    assert_eq!(got.name.as_deref(), Some("Back Again"));
    assert_eq!(query_ids(&ch, false).await, ["u1"]);

    let again = srv
        .users()
        .reactivate_user(ReactivateUserRequest {
            user_id: "u1".into(),
            ..ReactivateUserRequest::default()
        })
        .await
        .expect("reactivating an active user is not an error")
        .into_inner();
    let returned = again.user.expect("the user");
    assert_eq!(returned.deactivated_at, None);
    assert_eq!(
        returned.updated_at, got.updated_at,
        "a no-op reactivate does not touch updated_at"
    );
    if !again.task_id.is_empty() {
        wait_completed_ok(&ch, &again.task_id, &strings(&["u1"])).await;
    }
}

#[tokio::test]
async fn bulk_deactivate_and_reactivate_run_as_tasks_with_a_result_per_user() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = numbered_ids("b", 5);
    create_users(&ch, &ids).await;
    let extra = strings(&["active"]);
    create_users(&ch, &extra).await;
    // One of them is deactivated already: a no-op inside the batch.
    let single = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: ids[0].clone(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    wait_finished(&ch, &single.task_id).await;
    let first_deactivated_at = srv.get_ok(&ids[0]).await.deactivated_at;

    let task_id = srv
        .users()
        .deactivate_users(DeactivateUsersRequest {
            user_ids: ids.clone(),
            mark_messages_deleted: true,
            mark_channels_deleted: true,
            created_by_id: Some("admin".into()),
            request_id: None,
        })
        .await
        .expect("DeactivateUsers")
        .into_inner()
        .task_id;
    let task = wait_completed_ok(&ch, &task_id, &ids).await;
    assert_eq!(task.kind, "deactivate_users");
    for id in &ids {
        let got = srv.get_ok(id).await;
        assert!(got.deactivated_at.is_some(), "{id} deactivated");
    }
    assert_eq!(
        srv.get_ok(&ids[0]).await.deactivated_at,
        first_deactivated_at,
        "an already deactivated user keeps its deactivated_at"
    );
    assert_eq!(query_ids(&ch, false).await, extra);
    let mut everyone = ids.clone();
    everyone.extend(extra.clone());
    everyone.sort();
    assert_eq!(query_ids(&ch, true).await, everyone);

    let task_id = srv
        .users()
        .reactivate_users(ReactivateUsersRequest {
            user_ids: ids.clone(),
            restore_messages: true,
            restore_channels: true,
            ..ReactivateUsersRequest::default()
        })
        .await
        .expect("ReactivateUsers")
        .into_inner()
        .task_id;
    let task = wait_completed_ok(&ch, &task_id, &ids).await;
    assert_eq!(task.kind, "reactivate_users");
    for id in &ids {
        assert_eq!(
            srv.get_ok(id).await.deactivated_at,
            None,
            "{id} reactivated"
        );
    }
    assert_eq!(query_ids(&ch, false).await, everyone);
}

#[tokio::test]
async fn lifecycle_rpcs_refuse_unknown_and_deleted_users_all_or_nothing() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["u1", "u2"])).await;
    let deleted = delete_users(&ch, &strings(&["u2"]), "soft").await;
    wait_finished(&ch, &deleted).await;
    let tasks_before = task_count(&srv).await;

    let status = expect_err(
        srv.users()
            .deactivate_user(DeactivateUserRequest {
                user_id: "ghost".into(),
                ..DeactivateUserRequest::default()
            })
            .await,
    );
    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");

    let status = expect_err(
        srv.users()
            .deactivate_users(DeactivateUsersRequest {
                user_ids: strings(&["u1", "ghost"]),
                ..DeactivateUsersRequest::default()
            })
            .await,
    );
    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
    assert_eq!(
        srv.get_ok("u1").await.deactivated_at,
        None,
        "a failed bulk deactivate changes nobody"
    );

    let status = expect_err(
        srv.users()
            .delete_users(delete_request(&strings(&["u1", "ghost"]), "soft"))
            .await,
    );
    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
    srv.get_ok("u1").await;

    let status = expect_err(
        srv.users()
            .deactivate_user(DeactivateUserRequest {
                user_id: "u2".into(),
                ..DeactivateUserRequest::default()
            })
            .await,
    );
    assert_reason(&status, Code::FailedPrecondition, "USER_DELETED");
    let status = expect_err(
        srv.users()
            .reactivate_users(ReactivateUsersRequest {
                user_ids: strings(&["u2"]),
                ..ReactivateUsersRequest::default()
            })
            .await,
    );
    assert_reason(&status, Code::FailedPrecondition, "USER_DELETED");
    let status = expect_err(
        srv.users()
            .restore_users(RestoreUsersRequest {
                user_ids: strings(&["u1"]),
                ..RestoreUsersRequest::default()
            })
            .await,
    );
    assert_reason(&status, Code::FailedPrecondition, "USER_NOT_DELETED");

    let status = expect_err(srv.users().delete_users(delete_request(&[], "soft")).await);
    assert_invalid(&status, "user_ids");
    let status = expect_err(
        srv.users()
            .delete_users(delete_request(&numbered_ids("x", 101), "soft"))
            .await,
    );
    assert_invalid(&status, "user_ids");
    let status = expect_err(
        srv.users()
            .delete_users(delete_request(&strings(&["u1"]), "sideways"))
            .await,
    );
    assert_invalid(&status, "user");
    let status = expect_err(
        srv.users()
            .deactivate_users(DeactivateUsersRequest {
                user_ids: strings(&["u1", "u1"]),
                ..DeactivateUsersRequest::default()
            })
            .await,
    );
    assert_invalid(&status, "user_ids");

    assert_eq!(
        task_count(&srv).await,
        tasks_before,
        "refused requests enqueue nothing"
    );
}

#[tokio::test]
async fn soft_delete_hides_the_user_from_get_user_and_query_users() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["gone", "deactivated-gone", "stays"])).await;
    let deactivated = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "deactivated-gone".into(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    wait_finished(&ch, &deactivated.task_id).await;

    let doomed = strings(&["deactivated-gone", "gone"]);
    let task_id = delete_users(&ch, &doomed, "").await;
    let task = wait_completed_ok(&ch, &task_id, &doomed).await;
    assert_eq!(task.kind, "delete_users");

    for id in &doomed {
        let status = expect_err(srv.get(id).await);
        assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
        let kept = fetch_user(&ch, id, true)
            .await
            .expect("GetUser include_deleted");
        assert!(kept.deleted_at.is_some(), "{id}: deleted_at set");
        assert_eq!(
            kept.name.as_deref(),
            Some(format!("Name of {id}").as_str()),
            "soft delete keeps the data"
        );
        assert_eq!(
            custom_of(&kept),
            json!({"color": "blue", "nested": {"n": 1}})
        );
    }
    assert_eq!(query_ids(&ch, false).await, ["stays"]);
    assert_eq!(
        query_ids(&ch, true).await,
        ["stays"],
        "deleted users never show, even with include_deactivated_users"
    );
    assert_eq!(
        srv.find(json!({"id": {"$in": ["gone", "deactivated-gone"]}}))
            .await
            .expect("QueryUsers by id"),
        Vec::<String>::new()
    );
    let status = expect_err(srv.upsert([user("gone")]).await);
    assert_reason(&status, Code::FailedPrecondition, "USER_DELETED");

    // Restoring does not reactivate: the deactivated one comes back deactivated.
    let restored = srv
        .users()
        .restore_users(RestoreUsersRequest {
            user_ids: doomed.clone(),
            ..RestoreUsersRequest::default()
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    wait_completed_ok(&ch, &restored, &doomed).await;
    assert!(
        srv.get_ok("deactivated-gone")
            .await
            .deactivated_at
            .is_some()
    );
    assert_eq!(query_ids(&ch, false).await, ["gone", "stays"]);
    assert_eq!(
        query_ids(&ch, true).await,
        ["deactivated-gone", "gone", "stays"]
    );
}

#[tokio::test]
async fn restore_brings_a_soft_deleted_user_back() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = strings(&["r1", "r2"]);
    create_users(&ch, &ids).await;
    let deleted = delete_users(&ch, &ids, "soft").await;
    wait_completed_ok(&ch, &deleted, &ids).await;
    assert_eq!(query_ids(&ch, true).await, Vec::<String>::new());

    let task_id = srv
        .users()
        .restore_users(RestoreUsersRequest {
            user_ids: ids.clone(),
            created_by_id: Some("admin".into()),
            request_id: None,
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    let task = wait_completed_ok(&ch, &task_id, &ids).await;
    assert_eq!(task.kind, "restore_users");

    for id in &ids {
        let got = srv.get_ok(id).await;
        assert_eq!(got.deleted_at, None, "{id} restored");
        assert_eq!(got.name.as_deref(), Some(format!("Name of {id}").as_str()));
        assert_eq!(got.teams, ["red", "blue"]);
    }
    assert_eq!(query_ids(&ch, false).await, ids);
    // Writable again.
    srv.upsert_ok([user("r1").with_name("Renamed")]).await;
}

#[tokio::test]
async fn pruning_nullifies_name_image_custom_and_teams() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = strings(&["p1", "p2"]);
    let created = create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "pruning").await;
    wait_completed_ok(&ch, &task_id, &ids).await;

    for id in &ids {
        assert_reason(
            &expect_err(srv.get(id).await),
            Code::NotFound,
            "USER_NOT_FOUND",
        );
        let pruned = fetch_user(&ch, id, true)
            .await
            .expect("a pruned user is still there with include_deleted");
        assert!(pruned.deleted_at.is_some(), "{id}: deleted_at");
        assert_eq!(pruned.name, None, "{id}: name nullified");
        assert_eq!(pruned.image, None, "{id}: image nullified");
        assert_eq!(custom_of(&pruned), json!({}), "{id}: custom nullified");
        assert!(pruned.teams.is_empty(), "{id}: teams nullified");
        assert!(pruned.teams_role.is_empty(), "{id}: teams_role nullified");
        assert_eq!(pruned.created_at, created[id].created_at);
    }
    assert_eq!(query_ids(&ch, true).await, Vec::<String>::new());
}

#[tokio::test]
async fn restore_of_a_pruned_user_is_failed_precondition() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = strings(&["p1"]);
    create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "pruning").await;
    let restore = RestoreUsersRequest {
        user_ids: ids.clone(),
        ..RestoreUsersRequest::default()
    };

    // Refused at once (the task may still be running) and after it finished.
    let status = expect_err(srv.users().restore_users(restore.clone()).await);
    assert_reason(&status, Code::FailedPrecondition, "USER_PRUNED");
    wait_completed_ok(&ch, &task_id, &ids).await;
    let status = expect_err(srv.users().restore_users(restore).await);
    assert_reason(&status, Code::FailedPrecondition, "USER_PRUNED");
    assert!(
        fetch_user(&ch, "p1", true)
            .await
            .expect("include_deleted")
            .deleted_at
            .is_some(),
        "still deleted"
    );
    assert_eq!(
        task_count(&srv).await,
        1,
        "refused restores enqueue nothing"
    );
}

#[tokio::test]
async fn hard_delete_without_hard_messages_and_conversations_is_invalid_argument() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["h1"])).await;
    let base = DeleteUsersRequest {
        user_ids: strings(&["h1"]),
        user: "hard".into(),
        ..DeleteUsersRequest::default()
    };

    let neither = expect_err(srv.users().delete_users(base.clone()).await);
    assert_invalid(&neither, "messages");
    assert_invalid(&neither, "conversations");
    let no_conversations = expect_err(
        srv.users()
            .delete_users(DeleteUsersRequest {
                messages: "hard".into(),
                conversations: "soft".into(),
                ..base.clone()
            })
            .await,
    );
    assert_invalid(&no_conversations, "conversations");
    let soft_messages = expect_err(
        srv.users()
            .delete_users(DeleteUsersRequest {
                messages: "soft".into(),
                conversations: "hard".into(),
                ..base.clone()
            })
            .await,
    );
    assert_invalid(&soft_messages, "messages");

    let kept = srv.get_ok("h1").await;
    assert_eq!(kept.deleted_at, None, "nothing was written");
    assert_eq!(task_count(&srv).await, 0, "nothing was enqueued");
}

#[tokio::test]
async fn a_hard_deleted_id_is_free_again_for_a_fresh_user() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = strings(&["h1", "h2"]);
    let created = create_users(&ch, &ids).await;
    // h2 is soft-deleted first: deleting a deleted user again (soft, then hard) is allowed.
    let soft = delete_users(&ch, &ids[1..], "soft").await;
    wait_completed_ok(&ch, &soft, &ids[1..]).await;
    // h1 is deactivated first; the fresh user must not inherit that.
    let deactivated = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "h1".into(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    wait_finished(&ch, &deactivated.task_id).await;

    let task_id = delete_users(&ch, &ids, "hard").await;
    wait_completed_ok(&ch, &task_id, &ids).await;

    for id in &ids {
        assert_reason(
            &expect_err(fetch_user(&ch, id, true).await),
            Code::NotFound,
            "USER_NOT_FOUND",
        );
    }
    let status = expect_err(
        srv.users()
            .restore_users(RestoreUsersRequest {
                user_ids: strings(&["h1"]),
                ..RestoreUsersRequest::default()
            })
            .await,
    );
    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");

    let fresh = srv
        .upsert_ok([user("h1").with_name("Fresh"), user("h2")])
        .await;
    for id in &ids {
        let user = &fresh[id];
        assert!(
            ts_micros(&user.created_at, "created_at") > ts_micros(&created[id].created_at, "old"),
            "{id}: a new created_at"
        );
        assert_eq!(user.deleted_at, None);
        assert_eq!(user.deactivated_at, None);
        assert!(user.teams.is_empty(), "{id}: nothing of the old user kept");
        assert_eq!(custom_of(user), json!({}));
        assert_eq!(srv.get_ok(id).await, *user);
    }
    assert_eq!(fresh["h1"].name.as_deref(), Some("Fresh"));
    assert_eq!(query_ids(&ch, false).await, ids);
}

/// The state change commits with the request; the task is still running when reads see it.
#[tokio::test]
async fn state_changes_are_visible_before_the_task_finishes() {
    // 300 ms before each item: nothing below can outrun that on any machine.
    let srv = Launch::new().item_delay_ms(300).start().await;
    let ch = srv.channel();
    let mut users = users_client(&ch);
    let ids = numbered_ids("v", 6);
    create_users(&ch, &ids).await;
    let (to_delete, rest) = ids.split_at(2);
    let (to_deactivate, to_prune) = rest.split_at(2);

    let delete_task = delete_users(&ch, to_delete, "soft").await;
    for id in to_delete {
        let status = expect_err(fetch_user(&ch, id, false).await);
        assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
        assert!(
            fetch_user(&ch, id, true)
                .await
                .expect("include_deleted")
                .deleted_at
                .is_some()
        );
    }
    let task = fetch_task(&ch, &delete_task).await;
    assert!(
        !is_terminal(status_of(&task)),
        "the read must happen before the task finished: {}",
        brief(&task)
    );
    assert!(
        !query_ids(&ch, true)
            .await
            .iter()
            .any(|id| to_delete.contains(id)),
        "QueryUsers hides deleted users at once"
    );

    let single = users
        .deactivate_user(DeactivateUserRequest {
            user_id: to_deactivate[0].clone(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    assert!(
        single
            .user
            .as_ref()
            .is_some_and(|u| u.deactivated_at.is_some())
    );
    let bulk = users
        .deactivate_users(DeactivateUsersRequest {
            user_ids: to_deactivate[1..].to_vec(),
            ..DeactivateUsersRequest::default()
        })
        .await
        .expect("DeactivateUsers")
        .into_inner()
        .task_id;
    for id in to_deactivate {
        assert!(
            fetch_user(&ch, id, false)
                .await
                .expect("GetUser of a deactivated user")
                .deactivated_at
                .is_some(),
            "{id} deactivated at once"
        );
    }
    assert!(
        !query_ids(&ch, false)
            .await
            .iter()
            .any(|id| to_deactivate.contains(id))
    );
    let task = fetch_task(&ch, &bulk).await;
    assert!(!is_terminal(status_of(&task)), "{}", brief(&task));

    // Restore of a soft-deleted user and a pruning delete: visible at once too.
    let restore = users
        .restore_users(RestoreUsersRequest {
            user_ids: to_delete.to_vec(),
            ..RestoreUsersRequest::default()
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    for id in to_delete {
        assert_eq!(
            fetch_user(&ch, id, false)
                .await
                .expect("restored at once")
                .deleted_at,
            None
        );
    }
    let prune = delete_users(&ch, to_prune, "pruning").await;
    for id in to_prune {
        assert_reason(
            &expect_err(fetch_user(&ch, id, false).await),
            Code::NotFound,
            "USER_NOT_FOUND",
        );
    }
    let task = fetch_task(&ch, &restore).await;
    assert!(!is_terminal(status_of(&task)), "{}", brief(&task));

    for (task_id, ids) in [
        (&delete_task, to_delete),
        (&single.task_id, &to_deactivate[..1]),
        (&bulk, &to_deactivate[1..]),
        (&restore, to_delete),
        (&prune, to_prune),
    ] {
        wait_completed_ok(&ch, task_id, ids).await;
    }
    assert_eq!(query_ids(&ch, false).await, to_delete);
    // The tasks ran: pruned users lost their data, restored users are still there.
    for id in to_prune {
        let pruned = fetch_user(&ch, id, true).await.expect("include_deleted");
        assert_eq!(pruned.name, None, "{id} pruned by its task");
    }
}

#[tokio::test]
async fn a_delete_request_with_every_option_is_accepted_and_completes() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = strings(&["o1", "o2"]);
    create_users(&ch, &ids).await;
    let task_id = srv
        .users()
        .delete_users(DeleteUsersRequest {
            user_ids: ids.clone(),
            user: "hard".into(),
            conversations: "hard".into(),
            messages: "hard".into(),
            calls: "hard".into(),
            files: true,
            new_channel_owner_id: Some("heir".into()),
            new_call_owner_id: Some("heir".into()),
            created_by_id: Some("admin".into()),
            request_id: Some("everything-at-once".into()),
        })
        .await
        .expect("DeleteUsers with every option")
        .into_inner()
        .task_id;
    wait_completed_ok(&ch, &task_id, &ids).await;
    let tasks = tasks_client(&ch)
        .list_tasks(ListTasksRequest::default())
        .await
        .expect("ListTasks")
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task_id, task_id);
}

#[tokio::test]
async fn deactivating_deactivated_or_reactivating_active_users_returns_no_task() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["u1", "u2", "u3"])).await;
    let first = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "u1".into(),
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    wait_completed_ok(&ch, &first.task_id, &strings(&["u1"])).await;
    let tasks = task_count(&srv).await;

    let again = srv
        .users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "u1".into(),
            mark_messages_deleted: true,
            ..DeactivateUserRequest::default()
        })
        .await
        .expect("DeactivateUser again")
        .into_inner();
    let many = srv
        .users()
        .deactivate_users(DeactivateUsersRequest {
            user_ids: strings(&["u1"]),
            request_id: Some("retry-1".into()),
            ..DeactivateUsersRequest::default()
        })
        .await
        .expect("DeactivateUsers of a deactivated user")
        .into_inner();
    let active = srv
        .users()
        .reactivate_user(ReactivateUserRequest {
            user_id: "u2".into(),
            ..ReactivateUserRequest::default()
        })
        .await
        .expect("ReactivateUser of an active user")
        .into_inner();
    let active_many = srv
        .users()
        .reactivate_users(ReactivateUsersRequest {
            user_ids: strings(&["u2", "u3"]),
            ..ReactivateUsersRequest::default()
        })
        .await
        .expect("ReactivateUsers of active users")
        .into_inner();

    assert_eq!(again.task_id, "", "no new task for a no-op DeactivateUser");
    assert!(
        again.user.expect("the user").deactivated_at.is_some(),
        "the user is returned as it is"
    );
    assert_eq!(many.task_id, "", "no new task for a no-op DeactivateUsers");
    assert_eq!(active.task_id, "", "no new task for a no-op ReactivateUser");
    assert_eq!(
        active_many.task_id, "",
        "no task for a no-op ReactivateUsers"
    );
    assert_eq!(task_count(&srv).await, tasks, "no task was enqueued");

    // One user that changes is enough for a task; so is a rename of an active user.
    let mixed = srv
        .users()
        .deactivate_users(DeactivateUsersRequest {
            user_ids: strings(&["u1", "u2"]),
            ..DeactivateUsersRequest::default()
        })
        .await
        .expect("DeactivateUsers with one active user")
        .into_inner();
    wait_completed_ok(&ch, &mixed.task_id, &strings(&["u1", "u2"])).await;
    let renamed = srv
        .users()
        .reactivate_user(ReactivateUserRequest {
            user_id: "u3".into(),
            name: Some("Renamed".into()),
            ..ReactivateUserRequest::default()
        })
        .await
        .expect("ReactivateUser with a new name")
        .into_inner();
    wait_completed_ok(&ch, &renamed.task_id, &strings(&["u3"])).await;
    assert_eq!(task_count(&srv).await, tasks + 2);
}
