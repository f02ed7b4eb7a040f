//! Product fan-out (SPEC section 8): every lifecycle task tells every configured product about
//! every user, through `roster.product.v1.ProductHook`, with the request's options and an
//! idempotency key `<task_id>:<user_id>:<event>`; failing products are retried with backoff (the
//! task shows `waiting`), and a product that stays down fails the user's item without undoing
//! roster's own change. The products here are fake `ProductHook` servers inside the test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use roster::pb::{
    DeactivateUserRequest, DeactivateUsersRequest, DeleteUsersRequest, ReactivateUserRequest,
    ReactivateUsersRequest, RestoreUsersRequest, TaskStatus,
};
use roster::product_pb::{ContentDeletion, LifecycleOptions, UserDeletion, UserEvent};
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::*;

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// A server telling `products` (specs `name=url`), with quick retries unless `tweak` says else.
async fn roster_with(products: Vec<String>, tweak: impl FnOnce(&mut roster::Config)) -> Server {
    Launch::new()
        .config(|config| {
            config.products = products;
            config.product_backoff_ms = 20;
            tweak(config);
        })
        .start()
        .await
}

fn event_of(call: &Call) -> UserEvent {
    UserEvent::try_from(call.request.event).unwrap_or(UserEvent::Unspecified)
}

fn options_of(call: &Call) -> LifecycleOptions {
    call.request
        .options
        .clone()
        .unwrap_or_else(|| panic!("call without options: {:?}", call.request))
}

/// Each of `ids` was called exactly once by `product`, for `event` of `task_id`, with the
/// idempotency key `<task_id>:<user_id>:<event name>`; nobody else was called. Returns the calls
/// by user.
#[track_caller]
fn assert_once_per_user(
    product: &FakeProduct,
    task_id: &str,
    ids: &[String],
    event: UserEvent,
    event_name: &str,
) -> BTreeMap<String, Call> {
    let calls = product.calls();
    let mut by_user: BTreeMap<String, Call> = BTreeMap::new();
    for call in calls {
        let user = call.request.user_id.clone();
        if let Some(earlier) = by_user.insert(user.clone(), call.clone()) {
            panic!(
                "product {} was called twice for {user}: {:?} and {:?}",
                product.name(),
                earlier.request,
                call.request
            );
        }
    }
    let called: BTreeSet<&String> = by_user.keys().collect();
    let expected: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        called,
        expected,
        "users product {} heard of",
        product.name()
    );
    for (user, call) in &by_user {
        let r = &call.request;
        assert_eq!(event_of(call), event, "event for {user}: {r:?}");
        assert_eq!(r.task_id, task_id, "task id for {user}");
        assert_eq!(
            r.idempotency_key,
            format!("{task_id}:{user}:{event_name}"),
            "idempotency key for {user}"
        );
    }
    by_user
}

/// The per-user result names every product as `ok`, and the item is `ok`.
#[track_caller]
fn assert_products_ok(task: &roster::pb::Task, ids: &[String], products: &[&str]) {
    let result = result_of(task);
    let keys: BTreeSet<&String> = result.keys().collect();
    assert_eq!(
        keys,
        ids.iter().collect(),
        "users in the result of {}",
        brief(task)
    );
    let expected: serde_json::Map<String, Json> = products
        .iter()
        .map(|p| ((*p).to_owned(), json!("ok")))
        .collect();
    for (id, outcome) in &result {
        assert_eq!(
            outcome,
            &json!({"status": "ok", "products": expected}),
            "outcome of {id} in {}",
            brief(task)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What products hear

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_users_reaches_the_product_once_per_user_with_the_request_options() {
    let chat = FakeProduct::start("chat").await;
    let srv = roster_with(vec![chat.spec()], |_| {}).await;
    let ch = srv.channel();
    let ids = strings(&["del-a", "del-b", "del-c"]);
    create_users(&ch, &ids).await;

    let request = DeleteUsersRequest {
        user_ids: ids.clone(),
        user: "hard".into(),
        messages: "hard".into(),
        conversations: "hard".into(),
        calls: "soft".into(),
        new_channel_owner_id: Some("x".into()),
        created_by_id: Some("admin-1".into()),
        request_id: Some("delete-abc".into()),
        ..DeleteUsersRequest::default()
    };
    let task_id = users_client(&ch)
        .delete_users(request.clone())
        .await
        .expect("DeleteUsers")
        .into_inner()
        .task_id;
    let task = wait_finished(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Completed, "{}", brief(&task));
    assert_products_ok(&task, &ids, &["chat"]);

    let by_user = assert_once_per_user(&chat, &task_id, &ids, UserEvent::Deleted, "deleted");
    for (user, call) in &by_user {
        let o = options_of(call);
        let expected = LifecycleOptions {
            user: UserDeletion::Hard as i32,
            messages: ContentDeletion::Hard as i32,
            conversations: ContentDeletion::Hard as i32,
            calls: ContentDeletion::Soft as i32,
            files: false,
            new_channel_owner_id: "x".into(),
            new_call_owner_id: system_owner(user),
            ..LifecycleOptions::default()
        };
        assert_eq!(o, expected, "options for {user}");
        assert_eq!(
            call.request.created_by_id.as_deref(),
            Some("admin-1"),
            "created_by_id passes through for {user}"
        );
    }
    // roster's own change: hard deletion removes the users.
    for id in &ids {
        let status = fetch_user(&ch, id, true).await.expect_err("hard-deleted");
        assert_eq!(status.code(), Code::NotFound, "{id}: {status:?}");
    }

    // Retrying the request with its request_id enqueues nothing and calls nobody again.
    let again = users_client(&ch)
        .delete_users(request)
        .await
        .expect("DeleteUsers retried with its request_id")
        .into_inner()
        .task_id;
    assert_eq!(again, task_id, "same request_id, same task");
    let tasks = list_all_tasks(&ch, TaskStatus::Unspecified, "", 100).await;
    assert_eq!(tasks.len(), 1, "a retried request enqueues no task");
    assert_eq!(
        chat.call_count(),
        ids.len(),
        "no call for a retried request"
    );
}

/// Items whose products have answered wait a moment to commit together. A cancel arriving then
/// must not drop them: every user a product was told about is done in roster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_keeps_every_item_the_products_were_told_about() {
    // The first three calls answer at once, so their items wait in one chunk; the fourth takes
    // long enough for the cancel to land before the chunk commits.
    let chat = FakeProduct::with(
        "chat",
        Behavior {
            slow_from: 4,
            slow: Duration::from_millis(800),
            ..Behavior::default()
        },
    )
    .await;
    let srv = roster_with(vec![chat.spec()], |_| {}).await;
    let ch = srv.channel();
    let ids = numbered_ids("told", 8);
    create_users(&ch, &ids).await;

    let task_id = delete_users(&ch, &ids, "hard").await;
    chat.wait_for_calls(4, Duration::from_secs(10)).await;
    tasks_client(&ch)
        .cancel_task(roster::pb::CancelTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("CancelTask");
    let task = wait_finished(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Canceled, "{}", brief(&task));

    let told: Vec<String> = ids
        .iter()
        .filter(|id| !chat.calls_for(id).is_empty())
        .cloned()
        .collect();
    assert!(told.len() >= 4, "the product heard of {told:?}");
    assert_eq!(
        progress_of(&task).0 as usize,
        told.len(),
        "every user the product was told about is done: {}",
        brief(&task)
    );
    assert_products_ok(&task, &told, &["chat"]);
    for id in &ids {
        let found = fetch_user(&ch, id, true).await;
        if told.contains(id) {
            let status = found.expect_err("hard-deleted");
            assert_eq!(
                status.code(),
                Code::NotFound,
                "{id}, told to the product: {status:?}"
            );
        } else {
            let user = found.expect("a user the product never heard of keeps its row");
            assert!(user.deleted_at.is_some(), "{id} stays deleted");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_options_not_given_reach_products_as_unspecified_with_system_owners() {
    let chat = FakeProduct::start("chat").await;
    let srv = roster_with(vec![chat.spec()], |_| {}).await;
    let ch = srv.channel();

    // Nothing but the ids: soft, no content deletion, system owners, no created_by_id.
    let plain = strings(&["plain-1", "plain-2"]);
    create_users(&ch, &plain).await;
    let task_id = delete_users(&ch, &plain, "").await;
    let task = wait_finished(&ch, &task_id).await;
    assert_products_ok(&task, &plain, &["chat"]);
    let by_user = assert_once_per_user(&chat, &task_id, &plain, UserEvent::Deleted, "deleted");
    for (user, call) in &by_user {
        let expected = LifecycleOptions {
            user: UserDeletion::Soft as i32,
            new_channel_owner_id: system_owner(user),
            new_call_owner_id: system_owner(user),
            ..LifecycleOptions::default()
        };
        assert_eq!(options_of(call), expected, "options for {user}");
        assert_eq!(
            call.request.created_by_id, None,
            "no created_by_id for {user}"
        );
    }

    // Pruning with pruned messages, files and only the call owner given.
    let chat2 = FakeProduct::start("chat").await;
    let srv2 = roster_with(vec![chat2.spec()], |_| {}).await;
    let ch2 = srv2.channel();
    let pruned = strings(&["pr-1"]);
    create_users(&ch2, &pruned).await;
    let task_id = users_client(&ch2)
        .delete_users(DeleteUsersRequest {
            user_ids: pruned.clone(),
            user: "pruning".into(),
            messages: "pruning".into(),
            conversations: "soft".into(),
            files: true,
            new_call_owner_id: Some("heir".into()),
            ..DeleteUsersRequest::default()
        })
        .await
        .expect("DeleteUsers pruning")
        .into_inner()
        .task_id;
    let task = wait_finished(&ch2, &task_id).await;
    assert_products_ok(&task, &pruned, &["chat"]);
    let by_user = assert_once_per_user(&chat2, &task_id, &pruned, UserEvent::Deleted, "deleted");
    let expected = LifecycleOptions {
        user: UserDeletion::Pruning as i32,
        messages: ContentDeletion::Pruning as i32,
        conversations: ContentDeletion::Soft as i32,
        files: true,
        new_channel_owner_id: system_owner("pr-1"),
        new_call_owner_id: "heir".into(),
        ..LifecycleOptions::default()
    };
    assert_eq!(options_of(&by_user["pr-1"]), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_deactivate_and_reactivate_reach_products_with_their_options() {
    let chat = FakeProduct::start("chat").await;
    let srv = roster_with(vec![chat.spec()], |_| {}).await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["solo"])).await;

    let response = users_client(&ch)
        .deactivate_user(DeactivateUserRequest {
            user_id: "solo".into(),
            mark_messages_deleted: true,
            created_by_id: Some("mod-1".into()),
        })
        .await
        .expect("DeactivateUser")
        .into_inner();
    assert!(
        !response.task_id.is_empty(),
        "DeactivateUser returns its task id"
    );
    let task = wait_finished(&ch, &response.task_id).await;
    assert_products_ok(&task, &strings(&["solo"]), &["chat"]);
    let calls = assert_once_per_user(
        &chat,
        &response.task_id,
        &strings(&["solo"]),
        UserEvent::Deactivated,
        "deactivated",
    );
    let call = &calls["solo"];
    assert_eq!(
        options_of(call),
        LifecycleOptions {
            mark_messages_deleted: true,
            ..LifecycleOptions::default()
        },
        "deactivation sets only the mark_* options"
    );
    assert_eq!(call.request.created_by_id.as_deref(), Some("mod-1"));

    let response = users_client(&ch)
        .reactivate_user(ReactivateUserRequest {
            user_id: "solo".into(),
            restore_messages: true,
            name: Some("Solo again".into()),
            created_by_id: None,
        })
        .await
        .expect("ReactivateUser")
        .into_inner();
    let task = wait_finished(&ch, &response.task_id).await;
    assert_products_ok(&task, &strings(&["solo"]), &["chat"]);
    let reactivations: Vec<Call> = chat
        .calls()
        .into_iter()
        .filter(|c| c.request.task_id == response.task_id)
        .collect();
    assert_eq!(reactivations.len(), 1, "one call for the reactivation");
    let call = &reactivations[0];
    assert_eq!(event_of(call), UserEvent::Reactivated);
    assert_eq!(
        call.request.idempotency_key,
        format!("{}:solo:reactivated", response.task_id)
    );
    assert_eq!(call.request.user_id, "solo");
    assert_eq!(
        options_of(call),
        LifecycleOptions {
            restore_messages: true,
            ..LifecycleOptions::default()
        },
        "reactivation sets only the restore_* options"
    );
    assert_eq!(call.request.created_by_id, None);
    assert_eq!(chat.call_count(), 2, "nothing else was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_deactivate_reactivate_and_restore_reach_products() {
    let chat = FakeProduct::start("chat").await;
    let srv = roster_with(vec![chat.spec()], |_| {}).await;
    let ch = srv.channel();
    let ids = strings(&["bulk-1", "bulk-2", "bulk-3"]);
    create_users(&ch, &ids).await;
    let mut users = users_client(&ch);

    let deactivate = users
        .deactivate_users(DeactivateUsersRequest {
            user_ids: ids.clone(),
            mark_messages_deleted: false,
            mark_channels_deleted: true,
            created_by_id: Some("ops".into()),
            request_id: None,
        })
        .await
        .expect("DeactivateUsers")
        .into_inner()
        .task_id;
    assert_products_ok(&wait_finished(&ch, &deactivate).await, &ids, &["chat"]);

    let reactivate = users
        .reactivate_users(ReactivateUsersRequest {
            user_ids: ids.clone(),
            restore_messages: false,
            restore_channels: true,
            created_by_id: None,
            request_id: None,
        })
        .await
        .expect("ReactivateUsers")
        .into_inner()
        .task_id;
    assert_products_ok(&wait_finished(&ch, &reactivate).await, &ids, &["chat"]);

    let delete = delete_users(&ch, &ids, "soft").await;
    assert_products_ok(&wait_finished(&ch, &delete).await, &ids, &["chat"]);
    let restore = users
        .restore_users(RestoreUsersRequest {
            user_ids: ids.clone(),
            created_by_id: Some("ops".into()),
            request_id: None,
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    assert_products_ok(&wait_finished(&ch, &restore).await, &ids, &["chat"]);

    let calls = chat.calls();
    assert_eq!(calls.len(), 4 * ids.len(), "one call per user per task");
    let of_task = |task: &str| -> Vec<Call> {
        calls
            .iter()
            .filter(|c| c.request.task_id == task)
            .cloned()
            .collect()
    };
    for (task, event, name, options, created_by) in [
        (
            &deactivate,
            UserEvent::Deactivated,
            "deactivated",
            LifecycleOptions {
                mark_channels_deleted: true,
                ..LifecycleOptions::default()
            },
            Some("ops"),
        ),
        (
            &reactivate,
            UserEvent::Reactivated,
            "reactivated",
            LifecycleOptions {
                restore_channels: true,
                ..LifecycleOptions::default()
            },
            None,
        ),
        (
            &restore,
            UserEvent::Restored,
            "restored",
            LifecycleOptions::default(),
            Some("ops"),
        ),
    ] {
        let task_calls = of_task(task);
        let users: BTreeSet<String> = task_calls
            .iter()
            .map(|c| c.request.user_id.clone())
            .collect();
        assert_eq!(users, ids.iter().cloned().collect(), "users told of {name}");
        assert_eq!(task_calls.len(), ids.len(), "{name}: once per user");
        for call in &task_calls {
            let user = &call.request.user_id;
            assert_eq!(event_of(call), event, "{name} for {user}");
            assert_eq!(
                call.request.idempotency_key,
                format!("{task}:{user}:{name}"),
                "key of {name} for {user}"
            );
            assert_eq!(options_of(call), options, "options of {name} for {user}");
            assert_eq!(
                call.request.created_by_id.as_deref(),
                created_by,
                "created_by_id of {name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Failing products

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_failing_twice_then_succeeding_passes_through_waiting_and_ends_ok() {
    const BACKOFF_MS: u64 = 250;
    let chat = FakeProduct::with(
        "chat",
        Behavior {
            fail_first: 2,
            ..Behavior::default()
        },
    )
    .await;
    let srv = roster_with(vec![chat.spec()], |c| {
        c.product_backoff_ms = BACKOFF_MS;
        c.product_retries = 5;
    })
    .await;
    let ch = srv.channel();
    let ids = strings(&["flaky-1", "flaky-2"]);
    create_users(&ch, &ids).await;

    let task_id = delete_users(&ch, &ids, "soft").await;
    let seen = watch_to_end(&ch, &task_id, TASK_DEADLINE).await;
    let statuses: Vec<TaskStatus> = seen.iter().map(status_of).collect();
    assert!(
        statuses.contains(&TaskStatus::Waiting),
        "the task should show `waiting` while it backs off; WatchTask saw {statuses:?}"
    );
    let last = seen.last().expect("WatchTask sent something");
    assert_eq!(status_of(last), TaskStatus::Completed, "{}", brief(last));
    assert_products_ok(last, &ids, &["chat"]);

    for id in &ids {
        let calls = chat.calls_for(id);
        assert_eq!(calls.len(), 3, "{id}: two failures and a success");
        let attempts: Vec<u32> = calls.iter().map(|c| c.attempt).collect();
        assert_eq!(
            attempts,
            [1, 2, 3],
            "{id}: attempts as the product counted them"
        );
        let keys: BTreeSet<&str> = calls
            .iter()
            .map(|c| c.request.idempotency_key.as_str())
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([format!("{task_id}:{id}:deleted").as_str()]),
            "every repetition carries the same key"
        );
        // Exponential backoff: the second retry waits about twice as long as the first.
        let first_gap = calls[1].at - calls[0].at;
        let second_gap = calls[2].at - calls[1].at;
        assert!(
            first_gap >= Duration::from_millis(BACKOFF_MS * 9 / 10),
            "{id}: first retry after {first_gap:?}, backoff is {BACKOFF_MS} ms"
        );
        assert!(
            second_gap >= Duration::from_millis(2 * BACKOFF_MS * 9 / 10),
            "{id}: second retry after {second_gap:?}, expected about {} ms",
            2 * BACKOFF_MS
        );
    }
}

/// A product that never comes back fails every item, each error naming the product, after
/// `1 + retries` attempts; roster's own change (here a pruning, done by the task) stays applied.
async fn product_down_for_good(product: String, fake: Option<&FakeProduct>) {
    const RETRIES: u32 = 2;
    let srv = roster_with(vec![product], |c| {
        c.product_retries = RETRIES;
        c.product_backoff_ms = 10;
        c.product_timeout_ms = 1000;
    })
    .await;
    let ch = srv.channel();
    let ids = strings(&["down-1", "down-2", "down-3"]);
    create_users(&ch, &ids).await;

    let task_id = delete_users(&ch, &ids, "pruning").await;
    let task = wait_finished(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Failed, "{}", brief(&task));
    let error = task.error.as_ref().expect("a failed task carries an error");
    assert!(
        !error.description.is_empty(),
        "error description: {error:?}"
    );
    assert_eq!(progress_of(&task), (3, 3), "every item was done");
    let result = result_of(&task);
    assert_eq!(
        result.len(),
        ids.len(),
        "result names every user: {result:?}"
    );
    for id in &ids {
        let outcome = &result[id.as_str()];
        assert_eq!(outcome["status"], json!("error"), "{id}: {outcome}");
        let message = outcome["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("chat"),
            "{id}: the item's error should name the product: {outcome}"
        );
        // roster's own change stays: deleted and pruned.
        let user = fetch_user(&ch, id, true)
            .await
            .unwrap_or_else(|s| panic!("{id} after a failed task: {s:?}"));
        assert!(user.deleted_at.is_some(), "{id} stays deleted");
        assert_eq!(user.name, None, "{id} was pruned anyway");
    }
    if let Some(fake) = fake {
        for id in &ids {
            assert_eq!(
                fake.calls_for(id).len(),
                1 + RETRIES as usize,
                "{id}: one call and {RETRIES} retries"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_with_nothing_listening_fails_the_task_and_roster_changes_stay() {
    product_down_for_good(unreachable_product("chat"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_that_always_fails_fails_the_task_and_roster_changes_stay() {
    let chat = FakeProduct::with(
        "chat",
        Behavior {
            always_fail: true,
            ..Behavior::default()
        },
    )
    .await;
    product_down_for_good(chat.spec(), Some(&chat)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_failing_product_is_retried_and_named() {
    let chat = FakeProduct::start("chat").await;
    let video = FakeProduct::with(
        "video",
        Behavior {
            always_fail: true,
            ..Behavior::default()
        },
    )
    .await;
    let srv = roster_with(vec![chat.spec(), video.spec()], |c| {
        c.product_retries = 2;
        c.product_backoff_ms = 10;
    })
    .await;
    let ch = srv.channel();
    let ids = strings(&["mix-1", "mix-2"]);
    create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "soft").await;
    let task = wait_finished(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Failed, "{}", brief(&task));
    let result = result_of(&task);
    for id in &ids {
        let outcome = &result[id.as_str()];
        assert_eq!(outcome["status"], json!("error"), "{id}: {outcome}");
        let message = outcome["error"].as_str().unwrap_or_default();
        assert!(message.contains("video"), "{id}: names video: {outcome}");
        assert!(
            !message.contains("chat"),
            "{id}: chat succeeded and is not blamed: {outcome}"
        );
        assert_eq!(outcome["products"]["chat"], json!("ok"), "{id}: {outcome}");
        assert!(
            outcome["products"]["video"]
                .as_str()
                .is_some_and(|s| s.starts_with("error")),
            "{id}: {outcome}"
        );
        assert_eq!(chat.calls_for(id).len(), 1, "{id}: chat answered OK once");
        assert_eq!(
            video.calls_for(id).len(),
            3,
            "{id}: video tried 1 + 2 times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_that_does_not_answer_within_the_deadline_is_retried() {
    let chat = FakeProduct::with(
        "chat",
        Behavior {
            hang_first: 1,
            hang: Duration::from_secs(20),
            ..Behavior::default()
        },
    )
    .await;
    let srv = roster_with(vec![chat.spec()], |c| {
        c.product_timeout_ms = 300;
        c.product_retries = 3;
        c.product_backoff_ms = 10;
    })
    .await;
    let ch = srv.channel();
    let ids = strings(&["slowpoke"]);
    create_users(&ch, &ids).await;
    let started = Instant::now();
    let task_id = delete_users(&ch, &ids, "soft").await;
    let task = wait_finished(&ch, &task_id).await;
    let took = started.elapsed();
    assert_products_ok(&task, &ids, &["chat"]);
    let calls = chat.calls_for("slowpoke");
    assert_eq!(calls.len(), 2, "a timed-out call and a successful retry");
    assert_eq!(
        calls[0].request.idempotency_key,
        calls[1].request.idempotency_key
    );
    assert!(
        took < Duration::from_secs(10),
        "roster should give up on the hanging call after its 300 ms deadline; took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_products_one_slow_both_receive_every_user() {
    let chat = FakeProduct::start("chat").await;
    let video = FakeProduct::with(
        "video",
        Behavior {
            delay: Duration::from_millis(40),
            ..Behavior::default()
        },
    )
    .await;
    let srv = roster_with(vec![chat.spec(), video.spec()], |_| {}).await;
    let ch = srv.channel();
    let ids = numbered_ids("two", 30);
    create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "soft").await;
    let task = wait_finished(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Completed, "{}", brief(&task));
    assert_products_ok(&task, &ids, &["chat", "video"]);
    assert_once_per_user(&chat, &task_id, &ids, UserEvent::Deleted, "deleted");
    assert_once_per_user(&video, &task_id, &ids, UserEvent::Deleted, "deleted");
}

// ---------------------------------------------------------------------------------------------
// Crash during fan-out

const CRASH_TASKS: usize = 3;
const CRASH_PER_TASK: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_hear_every_user_after_a_crash_during_fan_out() {
    let started = Instant::now();
    let db = TestDb::create().await;
    let chat = FakeProduct::with(
        "chat",
        Behavior {
            delay: Duration::from_millis(2),
            ..Behavior::default()
        },
    )
    .await;
    let video = FakeProduct::with(
        "video",
        Behavior {
            delay: Duration::from_millis(5),
            ..Behavior::default()
        },
    )
    .await;
    let products = format!("{},{}", chat.spec(), video.spec());
    let args = [
        "--products",
        products.as_str(),
        "--task-item-delay-ms",
        "5",
        "--task-lease-seconds",
        "2",
        "--product-backoff-ms",
        "20",
    ];
    let mut first = Process::launch("first", db.url()).args(&args).start().await;
    let ch: Channel = first.patient_channel();
    let ids = numbered_ids("crash", CRASH_TASKS * CRASH_PER_TASK);
    create_users(&ch, &ids).await;
    let mut task_of: BTreeMap<String, String> = BTreeMap::new();
    let mut task_ids = Vec::new();
    for chunk in ids.chunks(CRASH_PER_TASK) {
        let task_id = delete_users(&ch, chunk, "soft").await;
        for id in chunk {
            task_of.insert(id.clone(), task_id.clone());
        }
        task_ids.push(task_id);
    }

    // Kill -9 in the middle of the fan-out.
    chat.wait_for_calls(ids.len() / 4, TASK_DEADLINE).await;
    first.kill();
    let heard_before = (chat.call_count(), video.call_count());
    eprintln!(
        "killed after {:?} with chat={} video={} of {} calls each",
        started.elapsed(),
        heard_before.0,
        heard_before.1,
        ids.len()
    );
    assert!(
        heard_before.0 < ids.len() && heard_before.1 < ids.len(),
        "the kill should land mid fan-out: {heard_before:?} of {}",
        ids.len()
    );

    let second = Process::launch("second", db.url())
        .args(&args)
        .start()
        .await;
    let ch = second.patient_channel();
    for task_id in &task_ids {
        let task = wait_task(&ch, task_id, Duration::from_secs(60), "finished", |t| {
            is_terminal(status_of(t))
        })
        .await;
        assert_eq!(
            status_of(&task),
            TaskStatus::Completed,
            "{} after the restart",
            brief(&task)
        );
        let users: Vec<String> = task_of
            .iter()
            .filter(|(_, t)| *t == task_id)
            .map(|(u, _)| u.clone())
            .collect();
        assert_products_ok(&task, &users, &["chat", "video"]);
    }

    for product in [&chat, &video] {
        let calls = product.calls();
        let mut by_user: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
        for call in &calls {
            by_user.entry(&call.request.user_id).or_default().push(call);
        }
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !by_user.contains_key(id.as_str()))
            .take(10)
            .collect();
        assert!(
            missing.is_empty(),
            "{} never heard of (first 10) {missing:?}",
            product.name()
        );
        assert_eq!(
            by_user.len(),
            ids.len(),
            "{} heard of nobody else",
            product.name()
        );
        let mut repeated = 0;
        for (user, calls) in &by_user {
            let expected_key = format!("{}:{user}:deleted", task_of[*user]);
            for call in calls {
                assert_eq!(
                    call.request.idempotency_key,
                    expected_key,
                    "{}: every call for {user} carries the same key",
                    product.name()
                );
                assert_eq!(event_of(call), UserEvent::Deleted);
            }
            if calls.len() > 1 {
                repeated += 1;
            }
        }
        eprintln!(
            "{}: {} calls for {} users, {repeated} users heard twice or more",
            product.name(),
            calls.len(),
            ids.len()
        );
    }
    eprintln!("crash test took {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the crash test should stay well under a minute"
    );
}
