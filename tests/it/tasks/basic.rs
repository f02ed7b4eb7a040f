//! TaskService: GetTask, WatchTask, ListTasks, CancelTask, and request_id idempotency.

use std::collections::BTreeSet;
use std::time::Duration;

use roster::pb::{
    CancelTaskRequest, DeactivateUsersRequest, DeleteUsersRequest, GetTaskRequest,
    ListTasksRequest, ReactivateUsersRequest, RestoreUsersRequest, TaskStatus, WatchTaskRequest,
};
use tonic::Code;

use crate::support::*;

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

fn task_ids(tasks: &[roster::pb::Task]) -> Vec<String> {
    tasks.iter().map(|t| t.task_id.clone()).collect()
}

async fn cancel(
    ch: &tonic::transport::Channel,
    task_id: &str,
) -> Result<roster::pb::Task, tonic::Status> {
    let response = tasks_client(ch)
        .cancel_task(CancelTaskRequest {
            task_id: task_id.to_owned(),
        })
        .await?;
    Ok(response
        .into_inner()
        .task
        .expect("CancelTask returns the task"))
}

#[tokio::test]
async fn watch_task_follows_a_100_user_delete_to_completed_and_closes() {
    // 10 ms before each item: the task runs for at least a second, long enough to watch.
    let srv = Launch::new().item_delay_ms(10).start().await;
    let ch = srv.channel();
    let ids = numbered_ids("w", 100);
    create_users(&ch, &ids).await;

    let task_id = delete_users(&ch, &ids, "soft").await;
    let seen = watch_to_end(&ch, &task_id, TASK_DEADLINE).await;

    assert!(!seen.is_empty(), "WatchTask sent nothing");
    let first = &seen[0];
    assert!(
        matches!(status_of(first), TaskStatus::Pending | TaskStatus::Running),
        "the first message is the task as it is now, pending or running: {}",
        brief(first)
    );
    let mut last_done = 0;
    for (i, task) in seen.iter().enumerate() {
        assert_eq!(task.task_id, task_id);
        assert_eq!(task.kind, "delete_users");
        let (done, total) = progress_of(task);
        assert_eq!(total, 100, "message {i}: total");
        let results = task.result.as_ref().map_or(0, |r| r.fields.len());
        assert_eq!(
            results, done as usize,
            "message {i}: one result per finished user"
        );
        assert!(
            done >= last_done,
            "message {i}: progress went back from {last_done} to {done}"
        );
        last_done = done;
        if i + 1 < seen.len() {
            assert!(
                matches!(
                    status_of(task),
                    TaskStatus::Pending | TaskStatus::Running | TaskStatus::Waiting
                ),
                "message {i} of {} is not the last but {}",
                seen.len(),
                brief(task)
            );
        }
    }
    let last = seen.last().expect("a last message");
    assert_eq!(status_of(last), TaskStatus::Completed, "{}", brief(last));
    assert_eq!(progress_of(last), (100, 100));
    assert!(
        seen.iter().any(|t| {
            let (done, _) = progress_of(t);
            done > 0 && done < 100
        }),
        "the watcher saw progress between 0 and 100: {:?}",
        seen.iter().map(progress_of).collect::<Vec<_>>()
    );

    let task = fetch_task(&ch, &task_id).await;
    assert_completed_ok(&task, &ids);
    assert_eq!(
        last, &task,
        "the last update streamed is the task GetTask reads"
    );
    let created = ts_micros(&task.created_at, "created_at");
    let started = ts_micros(&task.started_at, "started_at");
    let finished = ts_micros(&task.finished_at, "finished_at");
    assert!(
        created <= started && started <= finished,
        "{created} <= {started} <= {finished}"
    );

    // Watching a finished task: one message, then the stream ends.
    let again = watch_to_end(&ch, &task_id, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 1, "a finished task is sent once");
    assert_eq!(status_of(&again[0]), TaskStatus::Completed);
}

#[tokio::test]
async fn cancel_stops_a_running_task_between_items_and_keeps_what_was_done() {
    let srv = Launch::new().item_delay_ms(50).start().await;
    let ch = srv.channel();
    let ids = numbered_ids("c", 30);
    create_users(&ch, &ids).await;

    let task_id = delete_users(&ch, &ids, "pruning").await;
    wait_task(&ch, &task_id, TASK_DEADLINE, "3 items done", |t| {
        progress_of(t).0 >= 3
    })
    .await;
    let answered = cancel(&ch, &task_id).await.expect("CancelTask");
    assert!(
        matches!(
            status_of(&answered),
            TaskStatus::Running | TaskStatus::Canceled
        ),
        "CancelTask answers the task as it is: {}",
        brief(&answered)
    );
    let task = wait_finished(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Canceled, "{}", brief(&task));
    let (done, total) = progress_of(&task);
    assert_eq!(total, 30);
    assert!(
        (3..30).contains(&done),
        "canceled after 3 items, well before the end: {}",
        brief(&task)
    );
    assert!(
        task.finished_at.is_some(),
        "a canceled task has finished_at"
    );

    // Let the worker move on: once another task completed, the canceled one is surely left alone.
    let other = numbered_ids("other", 1);
    create_users(&ch, &other).await;
    let after = delete_users(&ch, &other, "soft").await;
    wait_completed_ok(&ch, &after, &other).await;

    let task = fetch_task(&ch, &task_id).await;
    assert_eq!(status_of(&task), TaskStatus::Canceled);
    assert_eq!(
        progress_of(&task),
        (done, total),
        "no progress after cancel"
    );
    // Items are processed in request order: the first `done` are done, the rest pending.
    let (done_ids, pending_ids) = ids.split_at(done as usize);
    assert_results_ok(&task, done_ids);
    for id in done_ids {
        let got = fetch_user(&ch, id, true).await.expect("include_deleted");
        assert!(got.deleted_at.is_some(), "{id} stays deleted");
        assert_eq!(got.name, None, "{id} done before the cancel stays pruned");
    }
    for id in pending_ids {
        let got = fetch_user(&ch, id, true).await.expect("include_deleted");
        assert!(
            got.deleted_at.is_some(),
            "{id}: the immediate state change is not undone"
        );
        assert_eq!(
            got.name.as_deref(),
            Some(format!("Name of {id}").as_str()),
            "{id}: its item stayed pending, so it was not pruned"
        );
    }

    let status = expect_err(cancel(&ch, &task_id).await);
    assert_reason(&status, Code::FailedPrecondition, "TASK_FINISHED");
}

#[tokio::test]
async fn cancel_of_a_pending_task_cancels_it_at_once() {
    // One worker, busy with the first task: the second one stays pending.
    let srv = Launch::new()
        .config(|config| {
            config.task_concurrency = 1;
            config.task_item_delay_ms = 50;
        })
        .start()
        .await;
    let ch = srv.channel();
    let busy_ids = numbered_ids("busy", 20);
    let queued_ids = numbered_ids("queued", 5);
    create_users(&ch, &busy_ids).await;
    create_users(&ch, &queued_ids).await;
    let busy = delete_users(&ch, &busy_ids, "soft").await;
    wait_task(&ch, &busy, TASK_DEADLINE, "running", |t| {
        status_of(t) == TaskStatus::Running
    })
    .await;
    let queued = delete_users(&ch, &queued_ids, "pruning").await;
    let task = fetch_task(&ch, &queued).await;
    assert_eq!(status_of(&task), TaskStatus::Pending, "{}", brief(&task));

    let watcher = {
        let (ch, queued) = (ch.clone(), queued.clone());
        tokio::spawn(async move { watch_to_end(&ch, &queued, TASK_DEADLINE).await })
    };
    let answered = cancel(&ch, &queued).await.expect("CancelTask");
    assert_eq!(
        status_of(&answered),
        TaskStatus::Canceled,
        "{}",
        brief(&answered)
    );
    assert_eq!(progress_of(&answered), (0, 5));
    assert!(result_of(&answered).is_empty(), "nothing was done");

    let watched = watcher.await.expect("watcher");
    let last = watched.last().expect("the watcher saw the task");
    assert_eq!(
        status_of(last),
        TaskStatus::Canceled,
        "a watch of a pending task ends with its cancel: {:?}",
        watched.iter().map(brief).collect::<Vec<_>>()
    );
    wait_completed_ok(&ch, &busy, &busy_ids).await;
    let task = fetch_task(&ch, &queued).await;
    assert_eq!(status_of(&task), TaskStatus::Canceled, "{}", brief(&task));
    assert_eq!(progress_of(&task), (0, 5));
    assert!(
        task.started_at.is_none(),
        "a task canceled while pending never started"
    );
    for id in &queued_ids {
        let got = fetch_user(&ch, id, true).await.expect("include_deleted");
        assert!(got.name.is_some(), "{id} was never pruned");
    }
}

#[tokio::test]
async fn cancel_of_a_finished_task_is_failed_precondition() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let ids = strings(&["f1"]);
    create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "soft").await;
    let before = wait_completed_ok(&ch, &task_id, &ids).await;

    let status = expect_err(cancel(&ch, &task_id).await);
    assert_reason(&status, Code::FailedPrecondition, "TASK_FINISHED");
    let after = fetch_task(&ch, &task_id).await;
    assert_eq!(after, before, "a refused cancel changes nothing");
}

#[tokio::test]
async fn an_unknown_task_is_not_found() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let mut tasks = tasks_client(&ch);
    let unknown = "0123456789abcdef0123456789abcdef";

    let status = expect_err(
        tasks
            .get_task(GetTaskRequest {
                task_id: unknown.into(),
            })
            .await,
    );
    assert_reason(&status, Code::NotFound, "TASK_NOT_FOUND");
    let status = expect_err(cancel(&ch, unknown).await);
    assert_reason(&status, Code::NotFound, "TASK_NOT_FOUND");
    let watched = tasks
        .watch_task(WatchTaskRequest {
            task_id: unknown.into(),
        })
        .await;
    let status = match watched {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("WatchTask of an unknown task answers");
            expect_err(first)
        }
    };
    assert_reason(&status, Code::NotFound, "TASK_NOT_FOUND");
    let status = expect_err(try_fetch_task(&ch, "").await);
    assert_eq!(status.code(), Code::NotFound, "empty id: {status:?}");
}

#[tokio::test]
async fn the_same_request_id_returns_the_same_task_and_enqueues_nothing() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["a", "b", "c"])).await;
    let mut users = users_client(&ch);
    let request = DeleteUsersRequest {
        request_id: Some("retry-1".into()),
        ..delete_request(&strings(&["a"]), "soft")
    };

    let first = users
        .delete_users(request.clone())
        .await
        .expect("DeleteUsers")
        .into_inner()
        .task_id;
    let count = |ch| async move {
        list_all_tasks(&ch, TaskStatus::Unspecified, "", 100)
            .await
            .len()
    };
    assert_eq!(count(ch.clone()).await, 1);

    let second = users
        .delete_users(request.clone())
        .await
        .expect("the retry succeeds")
        .into_inner()
        .task_id;
    assert_eq!(second, first, "same request_id, same task");
    assert_eq!(count(ch.clone()).await, 1, "nothing new enqueued");

    // A different body under a seen request_id changes nothing either.
    let other_body = users
        .delete_users(DeleteUsersRequest {
            request_id: Some("retry-1".into()),
            ..delete_request(&strings(&["b"]), "pruning")
        })
        .await
        .expect("a seen request_id with another body")
        .into_inner()
        .task_id;
    assert_eq!(other_body, first);
    assert_eq!(count(ch.clone()).await, 1);
    let b = fetch_user(&ch, "b", false)
        .await
        .expect("b was not deleted by a replayed request_id");
    assert_eq!(b.deleted_at, None);

    wait_completed_ok(&ch, &first, &strings(&["a"])).await;
    let after_done = users
        .delete_users(request)
        .await
        .expect("a retry after the task finished")
        .into_inner()
        .task_id;
    assert_eq!(
        after_done, first,
        "the id is remembered after the task finished"
    );
    assert_eq!(count(ch.clone()).await, 1);

    // The other bulk RPCs dedupe too; a new request_id is a new task.
    let deactivate = DeactivateUsersRequest {
        user_ids: strings(&["c"]),
        request_id: Some("retry-2".into()),
        ..DeactivateUsersRequest::default()
    };
    let d1 = users
        .deactivate_users(deactivate.clone())
        .await
        .expect("DeactivateUsers")
        .into_inner()
        .task_id;
    let d2 = users
        .deactivate_users(deactivate)
        .await
        .expect("DeactivateUsers retry")
        .into_inner()
        .task_id;
    assert_eq!(d1, d2);
    assert_ne!(d1, first);
    let reactivate = ReactivateUsersRequest {
        user_ids: strings(&["c"]),
        request_id: Some("retry-3".into()),
        ..ReactivateUsersRequest::default()
    };
    let r1 = users
        .reactivate_users(reactivate.clone())
        .await
        .expect("ReactivateUsers")
        .into_inner()
        .task_id;
    let r2 = users
        .reactivate_users(reactivate)
        .await
        .expect("ReactivateUsers retry")
        .into_inner()
        .task_id;
    assert_eq!(r1, r2);
    let restore = RestoreUsersRequest {
        user_ids: strings(&["a"]),
        request_id: Some("retry-4".into()),
        ..RestoreUsersRequest::default()
    };
    let s1 = users
        .restore_users(restore.clone())
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    let s2 = users
        .restore_users(restore)
        .await
        .expect("RestoreUsers retry (a is no longer deleted, but the id is seen)")
        .into_inner()
        .task_id;
    assert_eq!(s1, s2);
    assert_eq!(count(ch.clone()).await, 4);
    let status = expect_err(
        users
            .delete_users(DeleteUsersRequest {
                request_id: Some(String::new()),
                ..delete_request(&strings(&["b"]), "soft")
            })
            .await,
    );
    assert_invalid(&status, "request_id");
}

/// A client that times out and retries sends the same request_id while the first call may still
/// be in flight: every copy must get the one task id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_request_id_get_one_task() {
    // The real binary: should this fail, its log (printed on failure) shows the cause.
    let db = crate::support::TestDb::create().await;
    let srv = Process::launch("dedupe", db.url()).start().await;
    let ch = srv.patient_channel();
    let ids = numbered_ids("cr", 50);
    create_users(&ch, &ids).await;
    let request = DeleteUsersRequest {
        request_id: Some("concurrent-retry".into()),
        ..delete_request(&ids, "soft")
    };

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut users = users_client(&ch);
        let request = request.clone();
        calls.spawn(async move {
            users
                .delete_users(request)
                .await
                .map(|r| r.into_inner().task_id)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        answers.push(joined.expect("call task"));
    }

    let failures: Vec<String> = answers
        .iter()
        .filter_map(|a| {
            a.as_ref()
                .err()
                .map(|s| format!("{:?}: {}", s.code(), s.message()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "every retry succeeds; {} of 8 failed: {failures:?}",
        failures.len()
    );
    let distinct: BTreeSet<&String> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(distinct.len(), 1, "one task id for all: {distinct:?}");
    assert_eq!(
        list_all_tasks(&ch, TaskStatus::Unspecified, "", 100)
            .await
            .len(),
        1
    );
    let task_id = distinct.into_iter().next().expect("an id").clone();
    wait_completed_ok(&ch, &task_id, &ids).await;
}

#[tokio::test]
async fn list_tasks_filters_by_status_and_kind_newest_first_with_pages() {
    // One worker, 30 ms per item: the canceled task is canceled before it can finish.
    let srv = Launch::new()
        .config(|config| {
            config.task_concurrency = 1;
            config.task_item_delay_ms = 30;
        })
        .start()
        .await;
    let ch = srv.channel();
    create_users(&ch, &strings(&["u1", "u2", "u3"])).await;
    create_users(&ch, &numbered_ids("x", 10)).await;
    let mut users = users_client(&ch);
    let one = |id: &str| vec![id.to_owned()];

    let t1 = users
        .deactivate_users(DeactivateUsersRequest {
            user_ids: one("u1"),
            ..DeactivateUsersRequest::default()
        })
        .await
        .expect("DeactivateUsers")
        .into_inner()
        .task_id;
    wait_finished(&ch, &t1).await;
    let t2 = users
        .reactivate_users(ReactivateUsersRequest {
            user_ids: one("u1"),
            ..ReactivateUsersRequest::default()
        })
        .await
        .expect("ReactivateUsers")
        .into_inner()
        .task_id;
    wait_finished(&ch, &t2).await;
    let t3 = delete_users(&ch, &one("u2"), "soft").await;
    wait_finished(&ch, &t3).await;
    let t4 = users
        .restore_users(RestoreUsersRequest {
            user_ids: one("u2"),
            ..RestoreUsersRequest::default()
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    wait_finished(&ch, &t4).await;
    let t5 = users
        .deactivate_users(DeactivateUsersRequest {
            user_ids: one("u3"),
            ..DeactivateUsersRequest::default()
        })
        .await
        .expect("DeactivateUsers")
        .into_inner()
        .task_id;
    wait_finished(&ch, &t5).await;
    let t6 = delete_users(&ch, &numbered_ids("x", 10), "soft").await;
    cancel(&ch, &t6).await.expect("CancelTask");
    let canceled = wait_finished(&ch, &t6).await;
    assert_eq!(
        status_of(&canceled),
        TaskStatus::Canceled,
        "{}",
        brief(&canceled)
    );
    let all_ids = [&t6, &t5, &t4, &t3, &t2, &t1].map(String::clone).to_vec();

    let all = list_all_tasks(&ch, TaskStatus::Unspecified, "", 100).await;
    assert_eq!(task_ids(&all), all_ids, "newest first");
    for pair in all.windows(2) {
        assert!(
            ts_micros(&pair[0].created_at, "created_at")
                >= ts_micros(&pair[1].created_at, "created_at"),
            "created_at descending"
        );
    }
    for task in &all {
        assert!(
            result_of(task).is_empty(),
            "ListTasks leaves result empty: {}",
            brief(task)
        );
        assert!(task.progress.is_some(), "ListTasks shows progress");
    }
    let default_page = tasks_client(&ch)
        .list_tasks(ListTasksRequest::default())
        .await
        .expect("ListTasks with defaults")
        .into_inner();
    assert_eq!(task_ids(&default_page.tasks), all_ids);
    assert_eq!(default_page.next_page_token, "");

    let by_kind = |kind: &'static str| {
        let ch = ch.clone();
        async move { task_ids(&list_all_tasks(&ch, TaskStatus::Unspecified, kind, 100).await) }
    };
    assert_eq!(
        by_kind("deactivate_users").await,
        [t5.as_str(), t1.as_str()]
    );
    assert_eq!(by_kind("reactivate_users").await, [t2.as_str()]);
    assert_eq!(by_kind("delete_users").await, [t6.as_str(), t3.as_str()]);
    assert_eq!(by_kind("restore_users").await, [t4.as_str()]);

    let by_status = |status: TaskStatus, kind: &'static str| {
        let ch = ch.clone();
        async move { task_ids(&list_all_tasks(&ch, status, kind, 100).await) }
    };
    assert_eq!(
        by_status(TaskStatus::Completed, "").await,
        [
            t5.as_str(),
            t4.as_str(),
            t3.as_str(),
            t2.as_str(),
            t1.as_str()
        ]
    );
    assert_eq!(by_status(TaskStatus::Canceled, "").await, [t6.as_str()]);
    assert_eq!(
        by_status(TaskStatus::Pending, "").await,
        Vec::<String>::new()
    );
    assert_eq!(
        by_status(TaskStatus::Running, "").await,
        Vec::<String>::new()
    );
    assert_eq!(
        by_status(TaskStatus::Completed, "delete_users").await,
        [t3.as_str()]
    );

    // Pages of 2 (and of 1 with a filter): every task once, in order, last token empty.
    let mut tasks = tasks_client(&ch);
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = tasks
            .list_tasks(ListTasksRequest {
                limit: 2,
                page_token: token.clone(),
                ..ListTasksRequest::default()
            })
            .await
            .expect("ListTasks page")
            .into_inner();
        assert!(page.tasks.len() <= 2);
        pages.push(task_ids(&page.tasks));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(pages.len() < 10, "pagination does not end");
        token = page.next_page_token;
    }
    assert_eq!(pages.len(), 3, "6 tasks in pages of 2: {pages:?}");
    assert_eq!(pages.concat(), all_ids);
    assert_eq!(
        task_ids(&list_all_tasks(&ch, TaskStatus::Unspecified, "delete_users", 1).await),
        [t6.as_str(), t3.as_str()]
    );

    for (request, field) in [
        (
            ListTasksRequest {
                limit: 101,
                ..ListTasksRequest::default()
            },
            "limit",
        ),
        (
            ListTasksRequest {
                kind: "juggle_users".into(),
                ..ListTasksRequest::default()
            },
            "kind",
        ),
        (
            ListTasksRequest {
                page_token: "not a token".into(),
                ..ListTasksRequest::default()
            },
            "page_token",
        ),
        (
            ListTasksRequest {
                status: 42,
                ..ListTasksRequest::default()
            },
            "status",
        ),
    ] {
        let status = expect_err(tasks.list_tasks(request).await);
        assert_invalid(&status, field);
    }
}

/// With a retention of 0 hours, finished tasks are purged (GetTask answers NOT_FOUND).
#[tokio::test]
async fn finished_tasks_are_purged_after_the_retention_period() {
    let srv = Launch::new()
        .config(|config| config.task_retention_hours = 0)
        .start()
        .await;
    let ch = srv.channel();
    let ids = strings(&["p1"]);
    create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "soft").await;

    let deadline = tokio::time::Instant::now() + TASK_DEADLINE;
    loop {
        match try_fetch_task(&ch, &task_id).await {
            Ok(task) => assert!(
                tokio::time::Instant::now() < deadline,
                "not purged within {TASK_DEADLINE:?}: {}",
                brief(&task)
            ),
            Err(status) => {
                assert_reason(&status, Code::NotFound, "TASK_NOT_FOUND");
                break;
            }
        }
        tokio::time::sleep(POLL * 5).await;
    }
    assert!(
        fetch_user(&ch, "p1", true)
            .await
            .expect("include_deleted")
            .deleted_at
            .is_some(),
        "purging the task does not undo it"
    );
}
