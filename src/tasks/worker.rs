//! Worker loops inside `roster serve`.
use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::products::{ProductCall, Products, RetryPolicy};
use crate::bus::Bus;
use crate::telemetry::metrics::{
    PRODUCT_HOOK_FAILURES, TASK_DURATION, TASK_ITEM_DURATION, TASKS_UNDECODABLE,
};
use std::collections::BTreeMap;

use crate::domain::task::{ItemOutcome, TaskPayload};
use crate::store::{Claim, Claimed, ItemCommit, PendingItem, Store};

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
    /// How hard to try a failing product.
    pub retry: RetryPolicy,
    /// Change-feed events are purged after this long.
    pub event_retention: Duration,
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
            retry: RetryPolicy::default(),
            event_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What every worker loop of this process shares.
#[derive(Clone)]
struct Worker {
    store: Store,
    config: WorkerConfig,
    bus: Bus,
    products: Arc<dyn Products>,
}

/// Starts the worker loops and the purge loop on `tasks`, so that whoever owns the tracker can
/// wait for them; they stop when the bus shuts down, each after its current item.
pub fn spawn_workers(
    store: Store,
    config: WorkerConfig,
    bus: Bus,
    products: Arc<dyn Products>,
    tasks: &TaskTracker,
) {
    let owner = format!("worker-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker {
        store: store.clone(),
        config: config.clone(),
        bus: bus.clone(),
        products,
    };
    for slot in 0..config.concurrency.max(1) {
        tasks.spawn(work_loop(worker.clone(), format!("{owner}-{slot}")));
    }
    tasks.spawn(undecodable_loop(store.clone(), bus.clone()));
    tasks.spawn(purge_loop(store, config, bus));
}

/// How often the undecodable tasks are counted.
const UNDECODABLE_EVERY: Duration = Duration::from_secs(5);

/// Keeps `TASKS_UNDECODABLE` current, and says in the log when the number changes while there
/// are any: a task that no running binary can claim waits until one that can is deployed.
async fn undecodable_loop(store: Store, bus: Bus) {
    let mut last = 0;
    loop {
        match store.undecodable_tasks().await {
            Ok(count) => {
                metrics::gauge!(TASKS_UNDECODABLE).set(count as f64);
                if count != last && count > 0 {
                    tracing::warn!(
                        count,
                        "unfinished tasks of a kind or payload version this binary does not know \
                         are left for a binary that knows them"
                    );
                }
                last = count;
            }
            Err(err) => {
                tracing::warn!(error = %crate::error::Chain(&err), "counting undecodable tasks failed")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(UNDECODABLE_EVERY) => {}
            () = bus.shutting_down() => return,
        }
    }
}

async fn work_loop(worker: Worker, owner: String) {
    let Worker {
        store, config, bus, ..
    } = &worker;
    let lease = micros(config.lease);
    while !bus.is_shutting_down() {
        match store.claim_task(&owner, lease).await {
            Ok(Claim::Claimed(claimed, update)) => {
                bus.task_updated(update);
                run_task(&worker, &owner, claimed).await;
            }
            Ok(Claim::Ended(update)) => {
                if let Some(error) = &update.task.error {
                    tracing::warn!(task_id = %update.task.id, error = %error.kind, description = %error.description, "task ended without running");
                }
                bus.task_updated(update);
            }
            Ok(Claim::Nothing) => {
                tokio::select! {
                    () = bus.wait_for_work() => {}
                    () = tokio::time::sleep(config.poll) => {}
                    () = bus.shutting_down() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %crate::error::Chain(&err), "claiming a task failed");
                tokio::select! {
                    () = tokio::time::sleep(config.poll) => {}
                    () = bus.shutting_down() => {}
                }
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(task_id = %claimed.id, kind = claimed.kind.as_str()))]
async fn run_task(worker: &Worker, owner: &str, claimed: Claimed) {
    let Worker {
        store, config, bus, ..
    } = worker;
    // Cancelled by the heartbeat when another worker has taken the lease over.
    let lost = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(
        store.clone(),
        config.clone(),
        owner.to_owned(),
        claimed.id.clone(),
        lost.clone(),
    ));
    let started = std::time::Instant::now();
    let outcome = run_items(worker, owner, &claimed, &lost).await;
    metrics::histogram!(TASK_DURATION, "kind" => claimed.kind.as_str())
        .record(started.elapsed().as_secs_f64());
    heartbeat.abort();
    match outcome {
        Ok(Finish::AllDone) => {
            if let Err(err) = store.complete_task(&claimed.id, owner).await {
                tracing::warn!(error = %crate::error::Chain(&err), "completing the task failed; it will be retried");
            }
        }
        Ok(Finish::Finished | Finish::Stopped) => {}
        Ok(Finish::ShuttingDown) => {
            if let Err(err) = store.release_lease(&claimed.id, owner).await {
                tracing::warn!(error = %crate::error::Chain(&err), "releasing the lease failed; it will expire");
            }
        }
        Err(err) => {
            tracing::warn!(error = %crate::error::Chain(&err), "task interrupted; another attempt will resume it")
        }
    }
    bus.task_changed(&claimed.id);
}

enum Finish {
    /// Every item is done; the task still needs its terminal status.
    AllDone,
    /// Every item is done and the task has its terminal status.
    Finished,
    /// Canceled, or the lease went to another worker.
    Stopped,
    ShuttingDown,
}

/// Most items one transaction commits.
const CHUNK_ITEMS: usize = 100;
/// Items done within this long of the chunk's first commit together; slower items (products that
/// take their time, the test hook's delay) commit on their own, so progress keeps moving.
const CHUNK_WINDOW: Duration = Duration::from_millis(50);

/// Items whose products have answered, waiting to commit together.
struct Chunk {
    items: Vec<(PendingItem, ItemOutcome)>,
    started: Vec<std::time::Instant>,
}

async fn run_items(
    worker: &Worker,
    owner: &str,
    claimed: &Claimed,
    lost: &CancellationToken,
) -> crate::error::Result<Finish> {
    let Worker {
        store, config, bus, ..
    } = worker;
    let items = store.pending_items(&claimed.id).await?;
    if items.is_empty() {
        return Ok(Finish::AllDone);
    }
    let count = items.len();
    let mut chunk = Chunk {
        items: Vec::with_capacity(count.min(CHUNK_ITEMS)),
        started: Vec::new(),
    };
    for (i, item) in items.into_iter().enumerate() {
        if bus.is_shutting_down() {
            // What the products already answered for is committed, so it is not asked again.
            return Ok(commit_chunk(worker, owner, claimed, &mut chunk, false)
                .await?
                .unwrap_or(Finish::ShuttingDown));
        }
        if lost.is_cancelled() {
            return Ok(Finish::Stopped);
        }
        if !config.item_delay.is_zero() {
            tokio::time::sleep(config.item_delay).await;
        }
        let item_started = std::time::Instant::now();
        // Products first (a crash here repeats the calls, with the same idempotency key); then
        // roster's own effect commits together with the item's outcome.
        let outcome = match tell_products(worker, owner, claimed, &item).await? {
            Told::Outcome(outcome) => outcome,
            Told::ShuttingDown => {
                return Ok(commit_chunk(worker, owner, claimed, &mut chunk, false)
                    .await?
                    .unwrap_or(Finish::ShuttingDown));
            }
            Told::LeaseLost => return Ok(Finish::Stopped),
        };
        chunk.items.push((item, outcome));
        chunk.started.push(item_started);
        let last = i + 1 == count;
        if (last || chunk.items.len() >= CHUNK_ITEMS || chunk.started[0].elapsed() >= CHUNK_WINDOW)
            && let Some(finish) = commit_chunk(worker, owner, claimed, &mut chunk, last).await?
        {
            return Ok(finish);
        }
    }
    Ok(Finish::AllDone)
}

/// Commits the chunk (the task's end too, when `last`), then tells watchers and followers.
/// `Some` when the task needs nothing more from this worker.
async fn commit_chunk(
    worker: &Worker,
    owner: &str,
    claimed: &Claimed,
    chunk: &mut Chunk,
    last: bool,
) -> crate::error::Result<Option<Finish>> {
    if chunk.items.is_empty() {
        return Ok(None);
    }
    let Worker { store, bus, .. } = worker;
    let (committed, update) = store
        .commit_items(claimed, owner, &chunk.items, last)
        .await?;
    // Only a lost lease writes nothing; a cancel still commits the chunk.
    if committed != ItemCommit::LeaseLost {
        for started in &chunk.started {
            metrics::histogram!(TASK_ITEM_DURATION, "kind" => claimed.kind.as_str())
                .record(started.elapsed().as_secs_f64());
        }
        bus.events_appended();
    }
    let finish = match committed {
        ItemCommit::Done => None,
        ItemCommit::Finished => Some(Finish::Finished),
        ItemCommit::Canceled | ItemCommit::LeaseLost => Some(Finish::Stopped),
    };
    match update {
        Some(update) => bus.task_updated(update),
        None => bus.task_changed(&claimed.id),
    }
    chunk.items.clear();
    chunk.started.clear();
    Ok(finish)
}

enum Told {
    Outcome(ItemOutcome),
    ShuttingDown,
    LeaseLost,
}

/// Calls every product for one item, retrying the ones that fail with exponential backoff (the
/// task shows `waiting` meanwhile) until they all succeed or the retry budget is spent.
async fn tell_products(
    worker: &Worker,
    owner: &str,
    claimed: &Claimed,
    item: &PendingItem,
) -> crate::error::Result<Told> {
    let Worker {
        store,
        config,
        bus,
        products,
    } = worker;
    let names = products.names();
    if names.is_empty() {
        return Ok(Told::Outcome(ItemOutcome::Ok(Map::new())));
    }
    let TaskPayload::V1(options) = &claimed.payload;
    let call = ProductCall::new(&claimed.id, &item.user_id, claimed.kind.event(), options);
    let mut outcomes: BTreeMap<String, Result<(), String>> = names
        .into_iter()
        .map(|n| (n, Err("not called".to_owned())))
        .collect();
    let mut attempt = 0;
    loop {
        let mut calls = JoinSet::new();
        for name in outcomes
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(n, _)| n.clone())
        {
            let (products, call) = (products.clone(), call.clone());
            calls.spawn(async move {
                let result = products.call(&name, &call).await;
                (name, result)
            });
        }
        while let Some(joined) = calls.join_next().await {
            if let Ok((name, result)) = joined {
                if let Err(why) = &result {
                    metrics::counter!(PRODUCT_HOOK_FAILURES, "product" => name.clone())
                        .increment(1);
                    tracing::warn!(product = %name, user_id = %item.user_id, attempt, error = %why, "product call failed");
                }
                outcomes.insert(name, result);
            }
        }
        if outcomes.values().all(Result::is_ok) || attempt >= config.retry.retries {
            break;
        }
        attempt += 1;
        if !store.set_task_waiting(&claimed.id, owner, true).await? {
            return Ok(Told::LeaseLost);
        }
        bus.task_changed(&claimed.id);
        tokio::select! {
            () = tokio::time::sleep(config.retry.delay(attempt)) => {}
            () = bus.shutting_down() => return Ok(Told::ShuttingDown),
        }
        if !store.set_task_waiting(&claimed.id, owner, false).await? {
            return Ok(Told::LeaseLost);
        }
        bus.task_changed(&claimed.id);
    }
    let report: Map<String, serde_json::Value> = outcomes
        .iter()
        .map(|(name, r)| {
            let text = match r {
                Ok(()) => "ok".to_owned(),
                Err(why) => format!("error: {why}"),
            };
            (name.clone(), serde_json::Value::String(text))
        })
        .collect();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(name, r)| {
            r.as_ref()
                .err()
                .map(|why| format!("product {name} failed: {why}"))
        })
        .collect();
    let mut extra = Map::new();
    extra.insert("products".into(), serde_json::Value::Object(report));
    Ok(Told::Outcome(if failed.is_empty() {
        ItemOutcome::Ok(extra)
    } else {
        ItemOutcome::Error(failed.join("; "), extra)
    }))
}

async fn heartbeat(
    store: Store,
    config: WorkerConfig,
    owner: String,
    task_id: String,
    lost: CancellationToken,
) {
    let lease = micros(config.lease);
    loop {
        tokio::time::sleep(config.heartbeat).await;
        match store.renew_lease(&task_id, &owner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(err) => {
                tracing::warn!(error = %crate::error::Chain(&err), "renewing the lease failed")
            }
        }
    }
}

async fn purge_loop(store: Store, config: WorkerConfig, bus: Bus) {
    let every = Duration::from_secs(3600)
        .min(config.retention.max(Duration::from_secs(1)))
        .min(config.event_retention.max(Duration::from_secs(1)));
    loop {
        let before = store.now() - micros(config.retention);
        match store.purge_tasks(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged finished tasks past retention"),
            Err(err) => tracing::warn!(error = %crate::error::Chain(&err), "purging tasks failed"),
        }
        match store
            .purge_events(store.now() - micros(config.event_retention))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged change-feed events past retention"),
            Err(err) => tracing::warn!(error = %crate::error::Chain(&err), "purging events failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = bus.shutting_down() => return,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Actor;
    use crate::domain::task::{
        LifecycleV1, MAX_TASK_ATTEMPTS, NewTask, TaskErrorKind, TaskKind, TaskStatus,
    };
    use crate::domain::user::UserFields;
    use crate::store::testing::{on_every_store, set_task_attempts, set_task_kind};
    use crate::tasks::products::NoProducts;

    async fn enqueue(store: &Store, kind: TaskKind) -> String {
        store
            .upsert_users(vec![UserFields::with_id("u1")], &Actor::default())
            .await
            .expect("user");
        let new = NewTask {
            kind,
            user_ids: vec!["u1".into()],
            payload: TaskPayload::V1(LifecycleV1::default()),
            request_id: None,
        };
        store.enqueue_lifecycle(new).await.expect("enqueue").0
    }

    /// A task that has used up its attempts ends when a worker comes to claim it, and watchers
    /// hear of it through the bus like of any other change.
    #[tokio::test]
    async fn watchers_see_a_task_that_used_up_its_attempts_end() {
        on_every_store(|store, _clock| async move {
            let id = enqueue(&store, TaskKind::DeactivateUsers).await;
            set_task_attempts(&store, &id, MAX_TASK_ATTEMPTS).await;
            let bus = Bus::default();
            let mut changes = bus.subscribe();
            let worker = Worker {
                store: store.clone(),
                config: WorkerConfig::default(),
                bus: bus.clone(),
                products: Arc::new(NoProducts),
            };
            let looping = tokio::spawn(work_loop(worker, "w1".into()));
            let changed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
                .await
                .expect("a change within 10 s")
                .expect("the bus is open");
            assert_eq!(changed.task_id, id);
            let task = &changed.update.as_ref().expect("the change itself").task;
            assert_eq!(task.status, TaskStatus::Failed);
            let kind = task.error.as_ref().map(|e| e.kind.as_str());
            assert_eq!(kind, Some(TaskErrorKind::TooManyAttempts.as_ref()));
            bus.shut_down();
            looping.await.expect("the loop ends");
        })
        .await;
    }

    /// The gauge says how many unfinished tasks this binary leaves for another.
    #[test]
    fn undecodable_tasks_are_counted_in_a_gauge() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(on_every_store(|store, _clock| {
                let handle = handle.clone();
                async move {
                    let id = enqueue(&store, TaskKind::DeactivateUsers).await;
                    set_task_kind(&store, &id, "export_users").await;
                    let bus = Bus::default();
                    // Shut down already: the loop counts once and returns.
                    bus.shut_down();
                    undecodable_loop(store, bus).await;
                    let page = handle.render();
                    assert!(
                        page.lines().any(|l| l == format!("{TASKS_UNDECODABLE} 1")),
                        "{page}"
                    );
                }
            }))
        });
    }
}
