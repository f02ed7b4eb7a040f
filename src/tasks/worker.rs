//! Worker loops inside `roster serve`.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Map;
use tokio::task::JoinSet;

use super::Hub;
use crate::domain::task::ItemOutcome;
use crate::domain::time::now_micros;
use crate::store::{Claimed, ItemCommit, Store};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once by this process.
    pub concurrency: usize,
    /// How long a claim lasts without renewal; another replica takes the task over after it.
    pub lease: Duration,
    /// How often the lease is renewed while a task runs.
    pub heartbeat: Duration,
    /// How often an idle worker looks for tasks enqueued by other replicas.
    pub poll: Duration,
    /// Finished tasks are purged after this long.
    pub retention: Duration,
    /// Test hook: a pause before each item, so that tests can crash a process mid-task.
    pub item_delay: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            retention: Duration::from_secs(7 * 24 * 3600),
            item_delay: Duration::ZERO,
        }
    }
}

/// Starts the worker loops and the purge loop; they stop when the hub shuts down.
pub fn spawn_workers(store: Store, config: WorkerConfig, hub: Hub) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let owner = format!("worker-{}", uuid::Uuid::new_v4().simple());
    for slot in 0..config.concurrency.max(1) {
        let owner = format!("{owner}-{slot}");
        set.spawn(work_loop(store.clone(), config.clone(), hub.clone(), owner));
    }
    set.spawn(purge_loop(store, config, hub));
    set
}

async fn work_loop(store: Store, config: WorkerConfig, hub: Hub, owner: String) {
    let lease = micros(config.lease);
    while !hub.is_shutting_down() {
        match store.claim_task(&owner, lease).await {
            Ok(Some(claimed)) => {
                hub.task_changed(&claimed.id);
                run_task(&store, &config, &hub, &owner, claimed).await;
            }
            Ok(None) => {
                tokio::select! {
                    () = hub.wait_for_work() => {}
                    () = tokio::time::sleep(config.poll) => {}
                    () = hub.shutting_down() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "claiming a task failed");
                tokio::select! {
                    () = tokio::time::sleep(config.poll) => {}
                    () = hub.shutting_down() => {}
                }
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(task_id = %claimed.id, kind = claimed.kind.as_str()))]
async fn run_task(store: &Store, config: &WorkerConfig, hub: &Hub, owner: &str, claimed: Claimed) {
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(
        store.clone(),
        config.clone(),
        owner.to_owned(),
        claimed.id.clone(),
        lost.clone(),
    ));
    let outcome = run_items(store, config, hub, owner, &claimed, &lost).await;
    heartbeat.abort();
    match outcome {
        Ok(Finish::AllDone) => {
            if let Err(err) = store.complete_task(&claimed.id, owner).await {
                tracing::warn!(error = %err, "completing the task failed; it will be retried");
            }
        }
        Ok(Finish::Stopped) => {}
        Ok(Finish::ShuttingDown) => {
            if let Err(err) = store.release_lease(&claimed.id, owner).await {
                tracing::warn!(error = %err, "releasing the lease failed; it will expire");
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "task interrupted; another attempt will resume it")
        }
    }
    hub.task_changed(&claimed.id);
}

enum Finish {
    AllDone,
    /// Canceled, or the lease went to another worker.
    Stopped,
    ShuttingDown,
}

async fn run_items(
    store: &Store,
    config: &WorkerConfig,
    hub: &Hub,
    owner: &str,
    claimed: &Claimed,
    lost: &AtomicBool,
) -> crate::error::Result<Finish> {
    for item in store.pending_items(&claimed.id).await? {
        if hub.is_shutting_down() {
            return Ok(Finish::ShuttingDown);
        }
        if lost.load(Ordering::Relaxed) {
            return Ok(Finish::Stopped);
        }
        if !config.item_delay.is_zero() {
            tokio::time::sleep(config.item_delay).await;
        }
        // Products are told here (a later step); roster's own effect commits with the item.
        let outcome = ItemOutcome::Ok(Map::new());
        match store.commit_item(claimed, owner, &item, &outcome).await? {
            ItemCommit::Done => hub.task_changed(&claimed.id),
            ItemCommit::LeaseLost | ItemCommit::Canceled => return Ok(Finish::Stopped),
        }
    }
    Ok(Finish::AllDone)
}

async fn heartbeat(
    store: Store,
    config: WorkerConfig,
    owner: String,
    task_id: String,
    lost: Arc<AtomicBool>,
) {
    let lease = micros(config.lease);
    loop {
        tokio::time::sleep(config.heartbeat).await;
        match store.renew_lease(&task_id, &owner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(err) => tracing::warn!(error = %err, "renewing the lease failed"),
        }
    }
}

async fn purge_loop(store: Store, config: WorkerConfig, hub: Hub) {
    let every = Duration::from_secs(3600).min(config.retention.max(Duration::from_secs(1)));
    loop {
        let before = now_micros() - micros(config.retention);
        match store.purge_tasks(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged finished tasks past retention"),
            Err(err) => tracing::warn!(error = %err, "purging tasks failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = hub.shutting_down() => return,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
