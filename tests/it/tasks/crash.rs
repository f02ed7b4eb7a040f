//! Durability: the real binary is killed with SIGKILL in the middle of its tasks; the next process
//! on the same database finishes every one of them, applying each user's item exactly once. And a
//! graceful shutdown hands a running task over at once.

use std::collections::BTreeMap;
use std::time::Duration;

use roster::pb::TaskStatus;
use serde_json::json;
use tokio::time::Instant;
use tonic::Code;

use roster::pb::WatchTaskRequest;

use crate::support::*;

const REQUESTS: usize = 20;
const PER_REQUEST: usize = 100;
/// Pause before each item, so that the kill lands mid-task.
const ITEM_DELAY_MS: &str = "5";
const LEASE_SECONDS: &str = "2";
/// Bound on the second process finishing everything (about 10 s on 2 cores).
const RECOVERY_DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_killed_mid_way_are_finished_by_the_next_process_exactly_once() {
    let started = Instant::now();
    let db = TestDb::create().await;
    let args = [
        "--task-item-delay-ms",
        ITEM_DELAY_MS,
        "--task-lease-seconds",
        LEASE_SECONDS,
    ];
    let mut first = Process::launch("first", db.url()).args(&args).start().await;
    let ch = first.patient_channel();

    let ids = numbered_ids("k", REQUESTS * PER_REQUEST);
    create_users(&ch, &ids).await;
    // Even requests prune, odd ones hard-delete: both effects are visible afterwards.
    let mut tasks: Vec<(String, &'static str, &[String])> = Vec::new();
    for (i, chunk) in ids.chunks(PER_REQUEST).enumerate() {
        let mode = if i % 2 == 0 { "pruning" } else { "hard" };
        let task_id = delete_users(&ch, chunk, mode).await;
        tasks.push((task_id, mode, chunk));
    }

    // Wait for a task caught mid-way (some items done, some not), then kill.
    let deadline = Instant::now() + TASK_DEADLINE;
    let (mid_way, before_kill) = loop {
        let listed = list_all_tasks(&ch, TaskStatus::Unspecified, "", 100).await;
        assert_eq!(listed.len(), REQUESTS);
        if let Some(task) = listed.iter().find(|t| {
            let (done, total) = progress_of(t);
            done >= 5 && done + 20 < total
        }) {
            break (task.task_id.clone(), listed);
        }
        assert!(
            Instant::now() < deadline,
            "no task mid-way within {TASK_DEADLINE:?}: {:?}",
            listed.iter().map(brief).collect::<Vec<_>>()
        );
        tokio::time::sleep(POLL).await;
    };
    first.kill();
    let killed_at = now_micros();
    let done_before: u32 = before_kill.iter().map(|t| progress_of(t).0).sum();
    let unfinished = before_kill
        .iter()
        .filter(|t| !is_terminal(status_of(t)))
        .count();
    eprintln!(
        "killed the first process with {done_before}/{} items done, {unfinished} tasks unfinished",
        ids.len()
    );
    assert!(unfinished > 0);

    eprintln!("submitted and killed after {:?}", started.elapsed());
    let second = Process::launch("second", db.url())
        .args(&args)
        .start()
        .await;
    let ch = second.patient_channel();
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut finished = BTreeMap::new();
    for (task_id, mode, chunk) in &tasks {
        let within = deadline.saturating_duration_since(Instant::now());
        let task = wait_task(&ch, task_id, within, "completion after the restart", |t| {
            is_terminal(status_of(t))
        })
        .await;
        // Exactly one ok entry per user, progress total == done == 100.
        assert_completed_ok(&task, chunk);
        finished.insert(task_id.clone(), (task, *mode, *chunk));
    }

    eprintln!("every task finished after {:?}", started.elapsed());
    let (recovered, _, _) = &finished[&mid_way];
    assert!(
        ts_micros(&recovered.started_at, "started_at") < killed_at
            && ts_micros(&recovered.finished_at, "finished_at") > killed_at,
        "the task caught mid-way started before the kill and finished after it: {}",
        brief(recovered)
    );
    let total_done: u32 = finished.values().map(|(t, _, _)| progress_of(t).0).sum();
    assert_eq!(total_done as usize, ids.len(), "each item counted once");

    // Check the users, one task's users per concurrent checker.
    let mut checks = tokio::task::JoinSet::new();
    for (task, mode, chunk) in finished.values() {
        let (ch, what, mode, chunk) = (ch.clone(), brief(task), *mode, chunk.to_vec());
        checks.spawn(async move {
            for id in &chunk {
                if mode == "pruning" {
                    let user = fetch_user(&ch, id, true)
                        .await
                        .unwrap_or_else(|s| panic!("pruned {id} with include_deleted: {s:?}"));
                    assert!(user.deleted_at.is_some(), "{id} deleted");
                    assert_eq!(user.name, None, "{id} pruned by {what}");
                    assert_eq!(user.image, None, "{id} pruned");
                    assert_eq!(custom_of(&user), json!({}), "{id} pruned");
                    assert!(user.teams.is_empty(), "{id} pruned");
                } else {
                    let status = expect_err(fetch_user(&ch, id, true).await);
                    assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
                }
            }
        });
    }
    while let Some(checked) = checks.join_next().await {
        if let Err(e) = checked {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    assert_eq!(
        query_ids(&ch, true).await,
        Vec::<String>::new(),
        "no deleted user is listed"
    );
    eprintln!("crash test took {:?}", started.elapsed());
}

/// On shutdown, watchers get UNAVAILABLE and the worker gives its lease back, so a restarted
/// server resumes the task at once instead of waiting out the (default, 30 s) lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_ends_watches_with_unavailable_and_hands_the_task_over_at_once() {
    let first = Launch::new().item_delay_ms(20).start().await;
    let db = first.db();
    let ch = first.channel();
    let ids = numbered_ids("g", 100);
    create_users(&ch, &ids).await;
    let task_id = delete_users(&ch, &ids, "pruning").await;
    wait_task(&ch, &task_id, TASK_DEADLINE, "5 items done", |t| {
        progress_of(t).0 >= 5
    })
    .await;
    let mut stream = tasks_client(&ch)
        .watch_task(WatchTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("WatchTask")
        .into_inner();
    stream
        .message()
        .await
        .expect("first watch message")
        .expect("the task as it is now");

    first.stop().await.expect("a clean shutdown");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends when the server stops");
    let status = ended.expect_err("a watch cut by shutdown ends with an error, not a clean end");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let second = Launch::new().on(db).start().await;
    let resumed = Instant::now();
    // Well inside the 30 s lease: the lease was released, not left to expire.
    let task = wait_task(
        &second.channel(),
        &task_id,
        Duration::from_secs(15),
        "completion soon after the restart",
        |t| is_terminal(status_of(t)),
    )
    .await;
    assert_completed_ok(&task, &ids);
    eprintln!(
        "resumed and finished {:?} after the restart",
        resumed.elapsed()
    );
}
