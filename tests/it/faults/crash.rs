//! Process crash under load: the real binary is killed with SIGKILL while 8 clients write batches
//! and a client keeps submitting lifecycle tasks; a new process on the same database keeps every
//! batch that was acknowledged, holds no batch in part, and finishes every task that was accepted.
//! Both databases.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roster::pb::UpdateUsersRequest;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use super::writers::*;
use crate::support::*;

const WRITERS: usize = 8;
const WRITE_PAUSE: Duration = Duration::from_millis(10);
/// Users per submitted task, and the pause between submissions.
const TASK_USERS: usize = 40;
const SUBMIT_PAUSE: Duration = Duration::from_millis(150);
/// A pause before each task item (so that the kill lands mid-task) and short leases (so that
/// the next process takes the killed one's tasks over soon).
const ARGS: [&str; 4] = ["--task-item-delay-ms", "5", "--task-lease-seconds", "2"];
/// Bound on the load reaching an acknowledged write and an accepted task.
const LOAD_DEADLINE: Duration = Duration::from_secs(30);
/// Bound on every accepted task finishing after the last restart.
const TASKS_DEADLINE: Duration = Duration::from_secs(90);

/// A DeleteUsers call roster accepted.
struct Accepted {
    task_id: String,
    mode: &'static str,
    ids: Vec<String>,
}

/// What the task submitter saw: accepted tasks, and failed calls with their answer time.
#[derive(Default)]
struct Submissions {
    accepted: Vec<Accepted>,
    failed: Vec<(String, Code, String, Instant)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_load_loses_no_acknowledged_write_and_no_accepted_task() {
    let scale = scale();
    let started = Instant::now();
    let db = TestDb::create().await;
    let mut roster = Process::launch("crash-0", db.url())
        .args(&ARGS)
        .start()
        .await;
    let mut attempts = Vec::new();
    let mut accepted = Vec::new();
    let mut unexpected = Vec::new();
    for cycle in 0..scale.crashes {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked, tasks_accepted) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut writers = JoinSet::new();
        for w in 0..WRITERS {
            writers.spawn(write_batches(
                roster.channel(),
                format!("c{cycle}w{w}"),
                WRITE_PAUSE,
                stop.clone(),
                acked.clone(),
            ));
        }
        let submitter = tokio::spawn(submit_tasks(
            roster.channel(),
            cycle,
            stop.clone(),
            tasks_accepted.clone(),
        ));
        tokio::time::sleep(scale.before_crash).await;
        // On a slow machine, load a little longer: the kill must find acknowledged writes and
        // accepted tasks.
        let deadline = Instant::now() + LOAD_DEADLINE;
        while acked.load(Ordering::Relaxed) == 0 || tasks_accepted.load(Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "within {LOAD_DEADLINE:?}: {} batches acknowledged, {} tasks accepted",
                acked.load(Ordering::Relaxed),
                tasks_accepted.load(Ordering::Relaxed)
            );
            tokio::time::sleep(POLL).await;
        }

        let pid = roster.pid().to_string();
        // Taken before the signal: an answer that arrives while `kill` runs is the kill's doing.
        let killed_at = Instant::now();
        let killed = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("run kill -KILL");
        assert!(killed.success(), "kill -KILL {pid}: {killed}");
        let exit = roster
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("roster gone after SIGKILL");
        stop.store(true, Ordering::Relaxed);

        let mut written = Vec::new();
        for per_writer in writers.join_all().await {
            written.extend(per_writer);
        }
        let submitted = submitter.await.expect("the task submitter");
        // Before the kill every call succeeds; after it, any answer is fine (there is no server).
        for a in &written {
            if let Some((code, message)) = &a.error
                && a.answered < killed_at
            {
                let early = killed_at - a.answered;
                unexpected.push(format!(
                    "{} answered {code:?} {early:?} before the kill: {message}",
                    a.batch
                ));
            }
        }
        for (what, code, message, answered) in &submitted.failed {
            if *answered < killed_at {
                let early = killed_at - *answered;
                unexpected.push(format!(
                    "{what} answered {code:?} {early:?} before the kill: {message}"
                ));
            }
        }
        roster = Process::launch(&format!("crash-{}", cycle + 1), db.url())
            .args(&ARGS)
            .start()
            .await;
        let mut unfinished = 0;
        for task in &submitted.accepted {
            if !is_terminal(status_of(
                &fetch_task(&roster.channel(), &task.task_id).await,
            )) {
                unfinished += 1;
            }
        }
        eprintln!(
            "cycle {cycle}: killed ({exit}) after {} batches ({} acknowledged) and {} accepted \
             tasks ({unfinished} unfinished at the restart); answers after the kill: {:?}",
            written.len(),
            written.iter().filter(|a| a.acknowledged()).count(),
            submitted.accepted.len(),
            code_counts(
                written
                    .iter()
                    .filter_map(|a| a.error.as_ref().map(|(c, _)| c))
            ),
        );
        attempts.extend(written);
        accepted.extend(submitted.accepted);
    }
    assert!(
        unexpected.is_empty(),
        "{} call(s) failed before the kill:\n{}",
        unexpected.len(),
        unexpected[..unexpected.len().min(30)].join("\n")
    );

    let ch = roster.channel();
    // Serving again: a new write succeeds.
    users_client(&ch)
        .update_users(UpdateUsersRequest {
            users: [(
                "after-restart".to_owned(),
                crate::support::user("after-restart"),
            )]
            .into(),
        })
        .await
        .expect("a write after the restart");

    let deadline = Instant::now() + TASKS_DEADLINE;
    for task in &accepted {
        let within = deadline.saturating_duration_since(Instant::now());
        let finished = wait_task(
            &ch,
            &task.task_id,
            within,
            "completion after the restart",
            |t| is_terminal(status_of(t)),
        )
        .await;
        assert_completed_ok(&finished, &task.ids);
        for id in &task.ids {
            if task.mode == "pruning" {
                let pruned = fetch_user(&ch, id, true)
                    .await
                    .unwrap_or_else(|s| panic!("{id} after its pruning task: {s:?}"));
                assert!(
                    pruned.deleted_at.is_some() && pruned.name.is_none(),
                    "{id} pruned by {}",
                    brief(&finished)
                );
            } else {
                let status = expect_err(fetch_user(&ch, id, true).await);
                assert_reason(&status, Code::NotFound, "USER_NOT_FOUND");
            }
        }
    }

    let stored = all_users(&ch, true).await;
    assert_batches_durable("after the SIGKILL", "c", &attempts, &stored);
    eprintln!(
        "{} batches and {} tasks checked; crash test took {:?}",
        attempts.len(),
        accepted.len(),
        started.elapsed()
    );
}

/// Until `stop`: creates `TASK_USERS` users and submits a DeleteUsers for them, alternating
/// pruning and hard deletes.
async fn submit_tasks(
    channel: Channel,
    cycle: usize,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
) -> Submissions {
    let mut client = users_client(&channel);
    let mut seen = Submissions::default();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let ids = numbered_ids(&format!("k{cycle}-{n:03}"), TASK_USERS);
        let mode = if n.is_multiple_of(2) {
            "pruning"
        } else {
            "hard"
        };
        n += 1;
        let users = ids.iter().map(|id| (id.clone(), full_user(id))).collect();
        if let Err(status) = client.update_users(UpdateUsersRequest { users }).await {
            let what = format!("UpdateUsers of {}", ids[0]);
            let (code, message) = (status.code(), status.message().to_owned());
            seen.failed.push((what, code, message, Instant::now()));
            tokio::time::sleep(WRITE_PAUSE).await;
            continue;
        }
        match client.delete_users(delete_request(&ids, mode)).await {
            Ok(response) => {
                seen.accepted.push(Accepted {
                    task_id: response.into_inner().task_id,
                    mode,
                    ids,
                });
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                let what = format!("DeleteUsers of {}", ids[0]);
                let (code, message) = (status.code(), status.message().to_owned());
                seen.failed.push((what, code, message, Instant::now()));
            }
        }
        tokio::time::sleep(SUBMIT_PAUSE).await;
    }
    seen
}
