//! Two replicas (two real processes) on one PostgreSQL database: each task runs once, watching
//! works through either replica, and a replica that dies mid-task is taken over after its lease.
//! PostgreSQL only: on SQLite these tests say loudly that they were SKIPPED.

use std::collections::BTreeSet;
use std::time::Duration;

use roster::pb::TaskStatus;
use tokio::time::Instant;

use crate::support::*;

fn skipped(test: &str) -> bool {
    skip_unless_postgres(test, "two replicas need PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_submitted_to_two_replicas_each_run_once() {
    if skipped("tasks_submitted_to_two_replicas_each_run_once") {
        return;
    }
    let db = TestDb::create().await;
    let args = [
        "--task-item-delay-ms",
        "10",
        "--task-lease-seconds",
        "2",
        "--task-concurrency",
        "2",
    ];
    // Started together: both migrate the same fresh database.
    let (a, b) = tokio::join!(
        Process::launch("a", db.url()).args(&args).start(),
        Process::launch("b", db.url()).args(&args).start()
    );
    let (a, b) = (a.patient_channel(), b.patient_channel());

    let ids = numbered_ids("r", 600);
    create_users(&a, &ids).await;
    let mut tasks = Vec::new();
    for (i, chunk) in ids.chunks(100).enumerate() {
        let via = if i % 2 == 0 { &a } else { &b };
        tasks.push((delete_users(via, chunk, "pruning").await, chunk));
    }

    // While they run, count tasks running at once: more than one replica's worth (2) shows both
    // replicas took work.
    let deadline = Instant::now() + TASK_DEADLINE;
    let mut most_running = 0;
    loop {
        let listed = list_all_tasks(&b, TaskStatus::Unspecified, "", 100).await;
        let running = listed
            .iter()
            .filter(|t| status_of(t) == TaskStatus::Running)
            .count();
        most_running = most_running.max(running);
        if listed.iter().all(|t| is_terminal(status_of(t))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks unfinished after {TASK_DEADLINE:?}: {:?}",
            listed.iter().map(brief).collect::<Vec<_>>()
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(
        most_running > 2,
        "at most {most_running} tasks ran at once: the second replica took no work"
    );

    for (i, (task_id, chunk)) in tasks.iter().enumerate() {
        // Read through the replica it was not submitted to.
        let via = if i % 2 == 0 { &b } else { &a };
        let task = fetch_task(via, task_id).await;
        assert_completed_ok(&task, chunk);
    }
    for id in &ids {
        let user = fetch_user(&a, id, true).await.expect("include_deleted");
        assert!(
            user.deleted_at.is_some() && user.name.is_none(),
            "{id} pruned"
        );
    }
    assert_eq!(query_ids(&b, true).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_running_on_one_replica_is_watched_through_the_other_to_the_end() {
    if skipped("a_task_running_on_one_replica_is_watched_through_the_other_to_the_end") {
        return;
    }
    let db = TestDb::create().await;
    // 30 ms per item: about 3 s for the task, longer than B takes to start.
    let args = ["--task-item-delay-ms", "30"];
    let a = Process::launch("a", db.url()).args(&args).start().await;
    let ids = numbered_ids("w", 100);
    create_users(&a.patient_channel(), &ids).await;
    let task_id = delete_users(&a.patient_channel(), &ids, "soft").await;
    // Claimed by A, the only replica so far (its lease of 30 s keeps it there).
    wait_task(
        &a.patient_channel(),
        &task_id,
        TASK_DEADLINE,
        "running on A",
        |t| status_of(t) == TaskStatus::Running && progress_of(t).0 >= 1,
    )
    .await;

    let b = Process::launch("b", db.url()).args(&args).start().await;
    let seen = watch_to_end(&b.patient_channel(), &task_id, TASK_DEADLINE).await;

    let first = seen.first().expect("WatchTask through B sent something");
    assert_eq!(
        status_of(first),
        TaskStatus::Running,
        "B began watching while A ran it: {}",
        brief(first)
    );
    let progress: Vec<u32> = seen.iter().map(|t| progress_of(t).0).collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );
    let distinct: BTreeSet<u32> = progress.iter().copied().collect();
    assert!(
        distinct.len() >= 3,
        "B streamed A's progress as it happened, not only the end: {progress:?}"
    );
    let last = seen.last().expect("a last message");
    assert_eq!(status_of(last), TaskStatus::Completed, "{}", brief(last));
    assert_eq!(progress_of(last), (100, 100));
    assert_completed_ok(&fetch_task(&b.patient_channel(), &task_id).await, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_replica_dies_mid_task_the_other_finishes_it_after_the_lease_expires() {
    if skipped("when_a_replica_dies_mid_task_the_other_finishes_it_after_the_lease_expires") {
        return;
    }
    let db = TestDb::create().await;
    let lease = Duration::from_secs(2);
    let args = ["--task-item-delay-ms", "30", "--task-lease-seconds", "2"];
    let mut a = Process::launch("a", db.url()).args(&args).start().await;
    let ids = numbered_ids("d", 100);
    create_users(&a.patient_channel(), &ids).await;
    let task_id = delete_users(&a.patient_channel(), &ids, "pruning").await;
    wait_task(
        &a.patient_channel(),
        &task_id,
        TASK_DEADLINE,
        "running on A",
        |t| status_of(t) == TaskStatus::Running && progress_of(t).0 >= 1,
    )
    .await;
    let b = Process::launch("b", db.url()).args(&args).start().await;
    let bc = b.patient_channel();
    // Watch through B across the kill.
    let watcher = {
        let bc = bc.clone();
        let task_id = task_id.clone();
        tokio::spawn(async move { watch_to_end(&bc, &task_id, Duration::from_secs(60)).await })
    };
    let before = wait_task(&bc, &task_id, TASK_DEADLINE, "a few more items on A", |t| {
        progress_of(t).0 >= 5
    })
    .await;
    assert!(
        progress_of(&before).0 + 20 < 100,
        "A is still mid-task when killed: {}",
        brief(&before)
    );

    a.kill();
    let killed = Instant::now();
    let at_kill = progress_of(&fetch_task(&bc, &task_id).await).0;
    // A renewed its lease at most a third of it before dying: B may not take the task over
    // before two thirds of the lease. (One commit A sent before dying may still land.)
    let taken_over = wait_task(&bc, &task_id, TASK_DEADLINE, "B taking over", |t| {
        progress_of(t).0 > at_kill + 1 || is_terminal(status_of(t))
    })
    .await;
    let waited = killed.elapsed();
    eprintln!(
        "A killed at {at_kill}/100; B made progress {waited:?} later ({})",
        brief(&taken_over)
    );
    assert!(
        waited >= lease * 2 / 3 - Duration::from_millis(200),
        "B resumed the task {waited:?} after A died, before A's lease ({lease:?}) could expire"
    );

    let task = wait_finished(&bc, &task_id).await;
    assert_completed_ok(&task, &ids);
    let seen = watcher.await.expect("watcher task");
    let last = seen.last().expect("B's watcher saw the task");
    assert_eq!(status_of(last), TaskStatus::Completed, "{}", brief(last));
    assert_eq!(progress_of(last), (100, 100));
    for id in &ids {
        let user = fetch_user(&bc, id, true).await.expect("include_deleted");
        assert!(
            user.deleted_at.is_some() && user.name.is_none(),
            "{id} pruned once"
        );
    }
}
