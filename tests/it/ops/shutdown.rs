//! SPEC 13: on SIGTERM the real binary stops taking work, ends open streams with UNAVAILABLE,
//! releases its task leases and exits within the grace period; the next start on the same
//! database finishes the task; and from SIGTERM its main and health-only ports report NOT_SERVING.

use std::time::Duration;

use roster::pb::{TaskStatus, WatchTaskRequest};
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::*;

const GRACE_SECONDS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_with_unavailable_exits_in_time_and_the_next_start_finishes_the_task()
{
    let db = TestDb::create().await;
    let grace = GRACE_SECONDS.to_string();
    let mut first = Process::launch("first", db.url())
        .args(&[
            "--task-item-delay-ms",
            "100",
            "--shutdown-grace-seconds",
            &grace,
        ])
        .start()
        .await;
    let channel = first.channel();
    // 60 items of 100 ms each: about 6 s, far more than the test lets it run.
    let ids = numbered_ids("sig", 60);
    create_users(&channel, &ids).await;
    let task_id = delete_users(&channel, &ids, "pruning").await;

    let mut stream = tasks_client(&channel)
        .watch_task(WatchTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("WatchTask")
        .into_inner();
    // Wait until the task is running with some items done.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the task starts within 10 s")
            .expect("WatchTask does not fail before SIGTERM")
            .expect("WatchTask does not end before the task does");
        let task = next.task.expect("WatchTaskResponse without a task");
        assert_ne!(
            status_of(&task),
            TaskStatus::Completed,
            "finished too early: {}",
            brief(&task)
        );
        if status_of(&task) == TaskStatus::Running && progress_of(&task).0 >= 1 {
            break;
        }
    }

    first.sigterm();
    let signalled = Instant::now();
    // The stream ends with UNAVAILABLE (updates may still arrive before).
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Err(_) => panic!(
                "WatchTask still open 10 s after SIGTERM; log:\n{}",
                first.log_tail()
            ),
            Ok(Ok(Some(_update))) => continue,
            Ok(Ok(None)) => panic!("WatchTask ended without a status after SIGTERM"),
            Ok(Err(status)) => break status,
        }
    };
    assert_eq!(
        ended.code(),
        Code::Unavailable,
        "the stream ends with UNAVAILABLE: {ended:?}"
    );
    let exit = first
        .wait_exit(Duration::from_secs(GRACE_SECONDS + 10))
        .await;
    let took = signalled.elapsed();
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "still running {took:?} after SIGTERM; log:\n{}",
            first.log_tail()
        )
    });
    assert!(
        exit.success(),
        "exit status after SIGTERM: {exit}; log:\n{}",
        first.log_tail()
    );
    assert!(
        took < Duration::from_secs(GRACE_SECONDS),
        "exited {took:?} after SIGTERM, grace is {GRACE_SECONDS} s; log:\n{}",
        first.log_tail()
    );

    // The next start takes the released task over at once (the lease, 30 s by default, would
    // make this wait far longer had it not been released) and completes every item exactly once.
    let started = Instant::now();
    let second = Process::launch("second", db.url()).start().await;
    let task = wait_completed_ok(&second.channel(), &task_id, &ids).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the second process took {:?} to finish {}",
        started.elapsed(),
        brief(&task)
    );
}

/// The in-process test (`ops::run`) drives shutdown through `run`'s future; this one sends the
/// real binary a real SIGTERM: from the signal, both the main port and the plaintext health-only
/// port report NOT_SERVING to a probe watching them, and the process then exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_sigterm_the_binarys_main_and_health_only_ports_report_not_serving() {
    let db = TestDb::create().await;
    let grace = GRACE_SECONDS.to_string();
    let mut roster = Process::launch("health-on-sigterm", db.url())
        .health_port()
        .args(&["--shutdown-grace-seconds", &grace])
        .start()
        .await;
    let mut on_main = watch_health(roster.addr).await;
    let mut on_health = watch_health(roster.health_addr()).await;
    next_status("main", &mut on_main, ServingStatus::Serving).await;
    next_status("health-only", &mut on_health, ServingStatus::Serving).await;

    roster.sigterm();
    next_status("main", &mut on_main, ServingStatus::NotServing).await;
    next_status("health-only", &mut on_health, ServingStatus::NotServing).await;
    // Probes that saw NOT_SERVING go away; then the process exits, in time and with success.
    drop((on_main, on_health));
    let exit = roster
        .wait_exit(Duration::from_secs(GRACE_SECONDS + 10))
        .await
        .unwrap_or_else(|| panic!("still running after SIGTERM; log:\n{}", roster.log_tail()));
    assert!(
        exit.success(),
        "exit status after SIGTERM: {exit}; log:\n{}",
        roster.log_tail()
    );
}
