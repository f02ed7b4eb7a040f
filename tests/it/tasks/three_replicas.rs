//! Three replicas (three real processes) on one PostgreSQL database, directly or through a pooler
//! in transaction mode: clients spread writes and tasks across them, one replica is killed with
//! SIGKILL while it runs tasks, and every acknowledged write and every accepted task takes effect
//! exactly once; WatchTask streams on the survivors end `completed`.
//! PostgreSQL only: on SQLite (and without a pooler, for the pooled variant) these tests say
//! loudly that they were SKIPPED.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use roster::pb::{TaskStatus, UpdateUsersRequest};
use sea_orm::{ConnectionTrait, Statement};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::support::*;

/// Users per task; 40 ms per item: about 2.4 s per task, so the victim is mid-task when killed.
const PER_TASK: usize = 60;
const ITEM_DELAY_MS: &str = "40";
const LEASE_SECONDS: &str = "2";
/// The whole test stays well under a minute.
const WHOLE_TEST: Duration = Duration::from_secs(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_one_to_sigkill_and_every_write_and_task_lands_once() {
    let test = "three_replicas_lose_one_to_sigkill_and_every_write_and_task_lands_once";
    if skip_unless_postgres(test, "three replicas need PostgreSQL") {
        return;
    }
    three_replicas(TestDb::create().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_through_pgbouncer_lose_one_to_sigkill_and_every_write_and_task_lands_once()
{
    let test =
        "three_replicas_through_pgbouncer_lose_one_to_sigkill_and_every_write_and_task_lands_once";
    if skip_unless_postgres(test, "three replicas need PostgreSQL") {
        return;
    }
    let Some(db) = TestDb::create_pooled().await else {
        skip(
            test,
            "no pooler: set ROSTER_TEST_PG_POOLER_URL to a PgBouncer in transaction mode \
             (`.ci/run` starts one)",
        );
        return;
    };
    three_replicas(db).await;
}

async fn three_replicas(db: TestDb) {
    let started = Instant::now();
    let args = [
        "--task-item-delay-ms",
        ITEM_DELAY_MS,
        "--task-lease-seconds",
        LEASE_SECONDS,
        "--task-concurrency",
        "2",
    ];
    // The victim starts alone, so that the first two tasks are certainly its own.
    let mut victim = Process::launch("victim", db.url())
        .args(&args)
        .start()
        .await;
    let v = victim.patient_channel();
    let ids = numbered_ids("t3-", 6 * PER_TASK);
    let chunks: Vec<Vec<String>> = ids.chunks(PER_TASK).map(<[String]>::to_vec).collect();
    create_users(&v, &ids).await;
    let mut tasks: Vec<(String, Vec<String>)> = Vec::new();
    for chunk in &chunks[..2] {
        tasks.push((delete_users(&v, chunk, "pruning").await, chunk.clone()));
    }
    for (task_id, _) in &tasks {
        wait_task(&v, task_id, TASK_DEADLINE, "running on the victim", |t| {
            status_of(t) == TaskStatus::Running
        })
        .await;
    }

    let (b, c) = tokio::join!(
        Process::launch("b", db.url()).args(&args).start(),
        Process::launch("c", db.url()).args(&args).start()
    );
    let (b, c) = (b.patient_channel(), c.patient_channel());
    let replicas = [v.clone(), b.clone(), c.clone()];
    // Four more tasks, accepted by each replica in turn.
    for (i, chunk) in chunks[2..].iter().enumerate() {
        let via = &replicas[i % 3];
        tasks.push((delete_users(via, chunk, "soft").await, chunk.clone()));
    }

    // Watch every task to its end through a survivor, across the kill.
    let mut watchers = Vec::new();
    for (i, (task_id, _)) in tasks.iter().enumerate() {
        let (ch, task_id) = (if i % 2 == 0 { &b } else { &c }.clone(), task_id.clone());
        watchers.push(tokio::spawn(async move {
            watch_to_end(&ch, &task_id, WHOLE_TEST).await
        }));
    }

    // Meanwhile a client creates users one call at a time, round robin over the three replicas,
    // until told to stop; it keeps the ids whose creation was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(replicas.clone(), Arc::clone(&stop)));

    // Kill the victim while its tasks are mid-way.
    let before = wait_task(&b, &tasks[0].0, TASK_DEADLINE, "the victim mid-task", |t| {
        progress_of(t).0 >= 5
    })
    .await;
    assert!(
        progress_of(&before).0 + 10 < PER_TASK as u32,
        "the victim is still mid-task when killed: {}",
        brief(&before)
    );
    victim.kill();
    eprintln!(
        "killed the victim after {:?}, its first task at {}",
        started.elapsed(),
        brief(&before)
    );

    // Every accepted task completes, exactly once per user, watched to the end on a survivor.
    for ((task_id, chunk), watcher) in tasks.iter().zip(watchers) {
        let seen = watcher.await.expect("watcher");
        let last = seen.last().expect("the watcher saw the task");
        assert_eq!(status_of(last), TaskStatus::Completed, "{}", brief(last));
        let task = fetch_task(&c, task_id).await;
        assert_completed_ok(&task, chunk);
    }
    eprintln!("every task completed after {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, refused) = writer.await.expect("writer");
    eprintln!(
        "writer: {} creations acknowledged, {refused} refused (the victim's, after the kill)",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= 20,
        "the writer got few writes through: {}",
        acknowledged.len()
    );

    // Every acknowledged write is there, read through both survivors.
    for (i, id) in acknowledged.iter().enumerate() {
        let via = if i % 2 == 0 { &b } else { &c };
        let user = fetch_user(via, id, false)
            .await
            .unwrap_or_else(|s| panic!("acknowledged {id}: {s:?}"));
        assert_eq!(user.name.as_deref(), Some(format!("Name {id}").as_str()));
    }
    for id in &ids {
        let user = fetch_user(&b, id, true).await.expect("include_deleted");
        assert!(user.deleted_at.is_some(), "{id} deleted");
    }

    // Exactly once, as the change feed records it: no (kind, user) twice, every task's user has
    // its deletion, every acknowledged user its creation.
    let raw = raw_db(db.url()).await;
    let rows = raw
        .query_all_raw(Statement::from_string(
            raw.get_database_backend(),
            "SELECT kind, user_id, count(*) AS n FROM user_events GROUP BY kind, user_id",
        ))
        .await
        .expect("read user_events");
    let mut events: BTreeMap<(String, String), i64> = BTreeMap::new();
    for row in rows {
        let kind: String = row.try_get("", "kind").expect("kind");
        let user: String = row.try_get("", "user_id").expect("user_id");
        let n: i64 = row.try_get("", "n").expect("n");
        events.insert((kind, user), n);
    }
    let twice: Vec<_> = events.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "events recorded twice: {twice:?}");
    for id in &ids {
        assert!(
            events.contains_key(&("user.deleted".to_owned(), id.clone())),
            "{id} has its deletion event"
        );
    }
    for id in &acknowledged {
        assert!(
            events.contains_key(&("user.created".to_owned(), id.clone())),
            "{id} has its creation event"
        );
    }
    let elapsed = started.elapsed();
    eprintln!("three replicas: done in {elapsed:?}");
    assert!(elapsed < WHOLE_TEST, "took {elapsed:?}");
}

/// Creates `ack-N` users one call at a time over `replicas` in turn until `stop`; the ids whose
/// creation was acknowledged, and how many calls were refused.
async fn write_until(replicas: [Channel; 3], stop: Arc<AtomicBool>) -> (Vec<String>, usize) {
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("ack-{n}");
        let mut client = users_client(&replicas[n % 3]);
        n += 1;
        let request = UpdateUsersRequest {
            users: [(id.clone(), user(&id).with_name(&format!("Name {id}")))].into(),
        };
        let call = tokio::time::timeout(Duration::from_secs(5), client.update_users(request));
        match call.await {
            Ok(Ok(_)) => acknowledged.push(id),
            Ok(Err(_)) | Err(_) => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (acknowledged, refused)
}
