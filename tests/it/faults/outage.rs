//! Database outage: the real binary runs on a private PostgreSQL cluster while 8 clients write
//! batches and lifecycle tasks run; the cluster is stopped (`pg_ctl stop -m fast`, and in longer
//! runs also `-m immediate`, a database crash) for several seconds and started again on the same
//! port. roster answers UNAVAILABLE meanwhile (never INTERNAL or UNKNOWN): within the pool's
//! acquire timeout at first, and within 100 ms once its probe finds the database down (health
//! NOT_SERVING until it answers again). It never exits, recovers without a restart, keeps every batch it
//! acknowledged, applies no batch in part, and finishes the tasks that were in flight.
//!
//! PostgreSQL only (it brings its own cluster, so one pass is enough): it runs when
//! `ROSTER_TEST_DB=postgres`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roster::pb::GetUserRequest;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use super::writers::*;
use crate::support::*;

const WRITERS: usize = 8;
/// Pause between a writer's calls, so that the check afterwards stays short.
const WRITE_PAUSE: Duration = Duration::from_millis(10);
/// Lifecycle tasks submitted before each outage, and users per task.
const TASKS_PER_OUTAGE: usize = 3;
const TASK_USERS: usize = 40;
/// Bound on writes succeeding again once the database is back.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);
/// Bound on roster answering a call made while the database is down.
const PROBE_DEADLINE: Duration = Duration::from_secs(40);
/// Bound on the first answers during an outage: the pool's acquire timeout (2 s) plus margin.
const ACQUIRE_BOUND: Duration = Duration::from_millis(3500);
/// Bound on an answer once the database is known down (two calls made together).
const FAIL_FAST: Duration = Duration::from_millis(100);
/// Bound on health following the database down and up again (the probe asks every 0.5 s).
const HEALTH_DEADLINE: Duration = Duration::from_secs(10);
/// Bound on every task finishing after the last outage.
const TASKS_DEADLINE: Duration = Duration::from_secs(90);

/// One outage: when the stop was asked for, when the database was down, when it was started
/// again, when the first write succeeded after that.
struct Outage {
    stop_asked: Instant,
    down: Instant,
    up: Instant,
    recovered: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_with_unavailable_and_loses_no_acknowledged_write() {
    const TEST: &str =
        "a_database_outage_is_answered_with_unavailable_and_loses_no_acknowledged_write";
    if skip_unless_postgres(
        TEST,
        "the database-outage test runs in the PostgreSQL pass only",
    ) {
        return;
    }
    let Some(tools) = PgCluster::tools() else {
        skip(
            TEST,
            "initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin; install the \
             PostgreSQL server binaries to run it",
        );
        return;
    };
    let scale = scale();
    let started = Instant::now();
    let cluster = PgCluster::start_new(tools);
    eprintln!(
        "private cluster on port {} ready after {:?}",
        cluster.port(),
        started.elapsed()
    );
    // Short leases: a task whose worker lost the database is taken up again soon after.
    let args = ["--task-item-delay-ms", "20", "--task-lease-seconds", "2"];
    let mut roster = Process::launch("outage", &cluster.url())
        .args(&args)
        .start()
        .await;
    let ch = patient_channel(roster.addr);

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        writers.spawn(write_batches(
            patient_channel(roster.addr),
            format!("w{w}"),
            WRITE_PAUSE,
            stop.clone(),
            Arc::new(AtomicUsize::new(0)),
        ));
    }

    let mut outages = Vec::new();
    let mut tasks: Vec<(String, Vec<String>)> = Vec::new();
    for round in 0..scale.outages {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Tasks that are running when the database goes away.
        for t in 0..TASKS_PER_OUTAGE {
            let ids = numbered_ids(&format!("t{round}-{t}"), TASK_USERS);
            create_users(&ch, &ids).await;
            let task_id = delete_users(&ch, &ids, "pruning").await;
            tasks.push((task_id, ids));
        }
        let mut unfinished = 0;
        for (task_id, _) in &tasks {
            if !is_terminal(status_of(&fetch_task(&ch, task_id).await)) {
                unfinished += 1;
            }
        }
        assert!(
            unfinished > 0,
            "every task finished before the outage, so none is caught in flight"
        );

        let stop_asked = Instant::now();
        let stopping = &cluster;
        // A clean shutdown first; in longer runs every other outage is a crash of the database.
        let mode = if round.is_multiple_of(2) {
            "fast"
        } else {
            "immediate"
        };
        tokio::task::block_in_place(|| stopping.stop(mode));
        let down = Instant::now();
        eprintln!(
            "outage {round}: database stopped ({mode}) with {unfinished} task(s) unfinished, {:?} in",
            started.elapsed()
        );

        // Until roster's probe notices, a call waits for a connection at most the pool's acquire
        // timeout (2 s by default) before it answers; the database stays down until these calls
        // made during the outage got their answer.
        let minimum = tokio::time::sleep(scale.outage);
        let asked = Instant::now();
        tokio::time::timeout(PROBE_DEADLINE, probe_during_outage(&ch))
            .await
            .unwrap_or_else(|_| {
                panic!("calls during the outage got no answer within {PROBE_DEADLINE:?}")
            });
        let first_answer = asked.elapsed();
        assert!(
            first_answer < ACQUIRE_BOUND,
            "calls during the outage were answered after {first_answer:?}, beyond the acquire \
             timeout"
        );
        // Once the probe finds the database down, health says so and calls fail fast.
        let known_down = wait_health(&ch, ServingStatus::NotServing).await;
        let fast = Instant::now();
        probe_during_outage(&ch).await;
        let fast = fast.elapsed();
        assert!(
            fast < FAIL_FAST,
            "while the database is known down, calls are refused at once, not after {fast:?}"
        );
        eprintln!(
            "outage {round}: first answers after {first_answer:?}, health NOT_SERVING {:?} after \
             the stop, then answers in {fast:?}",
            known_down - down
        );
        minimum.await;
        assert_alive(&mut roster, "during the outage").await;

        tokio::task::block_in_place(|| cluster.start());
        let up = Instant::now();
        wait_health(&ch, ServingStatus::Serving).await;
        let recovered = write_until_ok(&ch, &format!("probe-{round}")).await;
        eprintln!(
            "outage {round}: database down {:?}, first write OK {:?} after it was back",
            up - down,
            recovered - up
        );
        assert_alive(&mut roster, "after the outage").await;
        outages.push(Outage {
            stop_asked,
            down,
            up,
            recovered,
        });
    }
    // Writes keep succeeding after the last recovery.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut attempts = Vec::new();
    for per_writer in writers.join_all().await {
        attempts.extend(per_writer);
    }

    // Answers: OK, or UNAVAILABLE once the database had been stopped; nothing else ever.
    let first_stop = outages[0].stop_asked;
    let unexpected: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            let (code, message) = a.error.as_ref()?;
            let fine = *code == Code::Unavailable && a.answered >= first_stop;
            (!fine).then(|| format!("{} answered {code:?}: {message}", a.batch))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} answer(s) other than OK or UNAVAILABLE-during-the-outage:\n{}",
        unexpected.len(),
        unexpected[..unexpected.len().min(30)].join("\n")
    );
    let during: usize = attempts
        .iter()
        .filter(|a| {
            !a.acknowledged()
                && outages
                    .iter()
                    .any(|o| a.answered >= o.down && a.answered <= o.up)
        })
        .count();
    assert!(
        during > 0,
        "no writer got an answer while the database was down"
    );
    let last = outages.last().expect("at least one outage");
    for w in 0..WRITERS {
        let prefix = format!("w{w}-");
        assert!(
            attempts
                .iter()
                .any(|a| a.batch.starts_with(&prefix) && a.acknowledged() && a.answered > last.up),
            "writer {w} never succeeded again after the database came back"
        );
    }
    eprintln!(
        "{} batches written: {:?}; {during} UNAVAILABLE answers while the database was down; \
         recovery after {:?}",
        attempts.len(),
        code_counts(
            attempts
                .iter()
                .map(|a| a.error.as_ref().map_or(&Code::Ok, |(c, _)| c))
        ),
        outages
            .iter()
            .map(|o| o.recovered - o.up)
            .collect::<Vec<_>>()
    );

    // Every task caught by an outage finishes, each user's item once and ok.
    let deadline = Instant::now() + TASKS_DEADLINE;
    for (task_id, ids) in &tasks {
        let within = deadline.saturating_duration_since(Instant::now());
        let task = wait_task(&ch, task_id, within, "completion after the outage", |t| {
            is_terminal(status_of(t))
        })
        .await;
        assert_completed_ok(&task, ids);
        for id in ids {
            let pruned = fetch_user(&ch, id, true)
                .await
                .unwrap_or_else(|s| panic!("{id} after its task: {s:?}"));
            assert!(
                pruned.deleted_at.is_some() && pruned.name.is_none(),
                "{id} pruned by {}",
                brief(&task)
            );
        }
    }

    let stored = all_users(&ch, true).await;
    assert_batches_durable("after the outage", "w", &attempts, &stored);
    assert_alive(&mut roster, "at the end").await;
    assert_eq!(health_status(&ch).await, Ok(ServingStatus::Serving));
    let log = roster.log();
    assert!(
        !log.contains("panicked"),
        "roster panicked:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("database-outage test took {:?}", started.elapsed());
}

/// A read and a task submission made while the database is down answer UNAVAILABLE.
async fn probe_during_outage(ch: &tonic::transport::Channel) {
    let mut reader = users_client(ch);
    let mut submitter = users_client(ch);
    let (read, submitted) = tokio::join!(
        reader.get_user(GetUserRequest {
            id: "w0-00000-0".to_owned(),
            include_deleted: false,
        }),
        submitter.delete_users(delete_request(&["w0-00000-1".to_owned()], "soft")),
    );
    match read {
        Err(status) if status.code() == Code::Unavailable => {}
        other => panic!("GetUser while the database is down: {other:?}"),
    }
    match submitted {
        Err(status) if status.code() == Code::Unavailable => {}
        other => panic!("DeleteUsers while the database is down: {other:?}"),
    }
}

/// Waits until health reports `want`; when it did.
async fn wait_health(ch: &tonic::transport::Channel, want: ServingStatus) -> Instant {
    let deadline = Instant::now() + HEALTH_DEADLINE;
    loop {
        if health_status(ch).await == Ok(want) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "health did not turn {want:?} within {HEALTH_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes one user until roster answers OK; anything but UNAVAILABLE meanwhile is a failure.
async fn write_until_ok(ch: &tonic::transport::Channel, id: &str) -> Instant {
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut client = users_client(ch);
    let mut answers = Vec::new();
    loop {
        let request = roster::pb::UpdateUsersRequest {
            users: [(id.to_owned(), user(id).with_custom(json!({"probe": true})))].into(),
        };
        match client.update_users(request).await {
            Ok(response) => {
                let stored = &response.into_inner().users[id];
                assert_eq!(custom_of(stored), json!({"probe": true}));
                return Instant::now();
            }
            Err(status) if status.code() == Code::Unavailable => answers.push(status.code()),
            Err(status) => panic!("a write while the database comes back: {status:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "writes did not succeed within {RECOVERY_DEADLINE:?} of the database coming back \
             ({} UNAVAILABLE answers meanwhile)",
            answers.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_alive(roster: &mut Process, when: &str) {
    if let Some(status) = roster.wait_exit(Duration::ZERO).await {
        panic!(
            "roster exited {when} ({status}); log:\n{}",
            roster.log_tail()
        );
    }
}
