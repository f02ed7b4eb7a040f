//! The scenarios, sent to roster over gRPC with its generated client.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use roster::pb;
use roster::pb::event_service_client::EventServiceClient;
use roster::pb::role_service_client::RoleServiceClient;
use roster::pb::task_service_client::TaskServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::data::{self, Population};
use crate::load::{self, Measured, closed_loop, scatter};

/// A few HTTP/2 connections, shared round-robin by the workers.
#[derive(Clone)]
pub struct Clients {
    channels: Arc<Vec<Channel>>,
}

impl Clients {
    pub fn new(channels: Vec<Channel>) -> Self {
        Clients {
            channels: Arc::new(channels),
        }
    }

    fn channel(&self, i: u64) -> Channel {
        let n = self.channels.len().max(1) as u64;
        self.channels[(i % n) as usize].clone()
    }

    pub fn users(&self, i: u64) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel(i))
    }
}

/// Creates the role the population uses that roster does not have built in (if missing).
pub async fn prepare_roles(clients: &Clients) -> anyhow::Result<()> {
    let created = RoleServiceClient::new(clients.channel(0))
        .create_role(pb::CreateRoleRequest {
            name: data::CUSTOM_ROLE.to_owned(),
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(status) => Err(status).context("creating the moderator role"),
    }
}

/// UpdateUsers: request `i` creates users `first + 100 i ..` (100 of them).
pub async fn upsert(
    clients: &Clients,
    population: &Population,
    first: u64,
    users: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let clients = clients.clone();
    let population = population.clone();
    closed_loop(concurrency, users / 100, move |i| {
        let mut client = clients.users(i);
        let start = first + i * 100;
        let batch = (start..start + 100)
            .map(|n| {
                let request = population.request(n);
                (request.id.clone(), request)
            })
            .collect();
        async move {
            client
                .update_users(pb::UpdateUsersRequest { users: batch })
                .await
                .context("UpdateUsers")?;
            Ok(())
        }
    })
    .await
}

/// UpdateUsersPartial of the custom key `score` of one user per request.
pub async fn partial(
    clients: &Clients,
    population: &Population,
    users: u64,
    updates: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let clients = clients.clone();
    let population = population.clone();
    closed_loop(concurrency, updates, move |i| {
        let mut client = clients.users(i);
        let id = population.id(scatter(i, users));
        let set = json!({ "score": i % 1000 });
        let set = set
            .as_object()
            .map(roster::grpc::convert::json_to_struct)
            .unwrap_or_default();
        async move {
            client
                .update_users_partial(pb::UpdateUsersPartialRequest {
                    users: vec![pb::UpdateUserPartialRequest {
                        id,
                        set: Some(set),
                        unset: Vec::new(),
                    }],
                })
                .await
                .context("UpdateUsersPartial")?;
            Ok(())
        }
    })
    .await
}

/// GetUser of one user per request.
pub async fn get(
    clients: &Clients,
    population: &Population,
    users: u64,
    reads: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let clients = clients.clone();
    let population = population.clone();
    closed_loop(concurrency, reads, move |i| {
        let mut client = clients.users(i);
        let id = population.id(scatter(i, users));
        async move {
            client
                .get_user(pb::GetUserRequest {
                    id,
                    include_deleted: false,
                })
                .await
                .context("GetUser")?;
            Ok(())
        }
    })
    .await
}

/// The query filter, as QueryUsers takes it.
pub fn query_filter() -> serde_json::Map<String, serde_json::Value> {
    let filter = json!({ "role": data::QUERY_ROLE, "custom.team": data::QUERY_TEAM });
    filter.as_object().cloned().unwrap_or_default()
}

/// Newest first.
pub const QUERY_SORT: (&str, i32) = ("created_at", -1);
pub const QUERY_LIMIT: u32 = 30;

/// QueryUsers: role and a custom key, newest first, limit 30. Every answer must be a full page.
pub async fn query(
    clients: &Clients,
    queries: u64,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let clients = clients.clone();
    let filter = roster::grpc::convert::json_to_struct(&query_filter());
    closed_loop(concurrency, queries, move |i| {
        let mut client = clients.users(i);
        let request = pb::QueryUsersRequest {
            filter: Some(filter.clone()),
            sort: vec![pb::SortField {
                field: QUERY_SORT.0.to_owned(),
                direction: QUERY_SORT.1,
            }],
            limit: QUERY_LIMIT,
            ..Default::default()
        };
        async move {
            let page = client
                .query_users(request)
                .await
                .context("QueryUsers")?
                .into_inner();
            if page.users.len() != QUERY_LIMIT as usize {
                bail!(
                    "QueryUsers returned {} users, expected a full page of {QUERY_LIMIT}",
                    page.users.len()
                );
            }
            Ok(())
        }
    })
    .await
}

/// UpdateUsers of `users` new users in batches of 100, `concurrency` at a time, in batch order;
/// returns each batch's latency, by batch number.
pub async fn import(
    clients: &Clients,
    population: &Population,
    users: u64,
    concurrency: usize,
) -> anyhow::Result<(Measured, Vec<Duration>)> {
    let batches = users / 100;
    let latencies = Arc::new(std::sync::Mutex::new(vec![
        Duration::ZERO;
        batches as usize
    ]));
    let measured = {
        let (clients, population, latencies) =
            (clients.clone(), population.clone(), latencies.clone());
        closed_loop(concurrency, batches, move |i| {
            let mut client = clients.users(i);
            let batch = (i * 100..(i + 1) * 100)
                .map(|n| {
                    let request = population.request(n);
                    (request.id.clone(), request)
                })
                .collect();
            let latencies = latencies.clone();
            async move {
                let sent = Instant::now();
                client
                    .update_users(pb::UpdateUsersRequest { users: batch })
                    .await
                    .context("UpdateUsers")?;
                let elapsed = sent.elapsed();
                if let Ok(mut latencies) = latencies.lock() {
                    latencies[i as usize] = elapsed;
                }
                Ok(())
            }
        })
        .await?
    };
    let latencies = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("an import worker panicked"))?
        .clone();
    Ok((measured, latencies))
}

/// What the change-feed follower saw.
pub struct FeedOutcome {
    pub events: u64,
    /// The sequence of the last event seen: where the next follower starts.
    pub last_sequence: i64,
    /// From the start of `upsert` to the last event's arrival.
    pub elapsed: Duration,
    /// Arrival minus the event's commit time (`at`), microseconds.
    pub lag: Histogram<u64>,
}

/// Follows the feed after `after_sequence` (`user.created` of this run's users numbered in
/// `numbers`) until all of them arrived, or until 30 s passed after `upsert_done` fires.
pub async fn follow_feed(
    channel: Channel,
    after_sequence: i64,
    population: Population,
    numbers: std::ops::Range<u64>,
    started: Instant,
    upsert_done: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<FeedOutcome> {
    let mut stream = EventServiceClient::new(channel)
        .watch_user_events(pb::WatchUserEventsRequest {
            after_sequence,
            kinds: vec!["user.created".to_owned()],
            user_ids: Vec::new(),
        })
        .await
        .context("WatchUserEvents")?
        .into_inner();
    let expected = numbers.end - numbers.start;
    let mut last_sequence = after_sequence;
    let mut lag = load::histogram();
    let mut events = 0;
    let mut last = started;
    let give_up = async {
        let _ = upsert_done.await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    };
    tokio::pin!(give_up);
    while events < expected {
        let message = tokio::select! {
            message = stream.message() => message.context("WatchUserEvents stream")?,
            () = &mut give_up => bail!("the feed delivered {events} of {expected} events within 30 s of the last write"),
        };
        let Some(message) = message else {
            bail!("the feed ended after {events} of {expected} events");
        };
        let Some(event) = message.event else { continue };
        last_sequence = last_sequence.max(event.sequence);
        if !population
            .number(&event.user_id)
            .is_some_and(|n| numbers.contains(&n))
        {
            continue;
        }
        last = Instant::now();
        if let Some(at) = event.at.as_ref().and_then(roster::grpc::convert::micros) {
            load::record(&mut lag, since_micros(at));
        }
        events += 1;
    }
    Ok(FeedOutcome {
        events,
        last_sequence,
        elapsed: last.duration_since(started),
        lag,
    })
}

/// How long ago `micros` (since the Unix epoch) was; zero for an instant in the future.
fn since_micros(micros: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let then = u128::try_from(micros).unwrap_or_default();
    Duration::from_micros(u64::try_from(now.saturating_sub(then)).unwrap_or(u64::MAX))
}

/// What the delete tasks did.
pub struct DeleteOutcome {
    pub users: u64,
    /// From the first DeleteUsers to the last task's terminal state seen by its watcher.
    pub elapsed: Duration,
    /// DeleteUsers answers.
    pub enqueue: Histogram<u64>,
    /// Arrival of each WatchTask update minus the task's `updated_at` in it (the time roster
    /// wrote the change, inside the item's transaction, just before its commit).
    pub lag: Histogram<u64>,
}

/// DeleteUsers (soft) of users `first..first + users` as tasks of 100, `concurrency` requests
/// at a time, each task watched with WatchTask until it completes.
pub async fn delete_task(
    clients: &Clients,
    population: &Population,
    first: u64,
    users: u64,
    concurrency: usize,
) -> anyhow::Result<DeleteOutcome> {
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let watchers = clients.clone();
    let enqueue = {
        let clients = clients.clone();
        let population = population.clone();
        closed_loop(concurrency, users / 100, move |i| {
            let mut client = clients.users(i);
            let start = first + i * 100;
            let user_ids = (start..start + 100).map(|n| population.id(n)).collect();
            let watchers = watchers.clone();
            let done_tx = done_tx.clone();
            async move {
                let task_id = client
                    .delete_users(pb::DeleteUsersRequest {
                        user_ids,
                        user: "soft".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .context("DeleteUsers")?
                    .into_inner()
                    .task_id;
                let channel = watchers.channel(i);
                tokio::spawn(async move {
                    let _ = done_tx.send(watch_task(channel, task_id).await);
                });
                Ok(())
            }
        })
        .await?
    };
    let tasks = users / 100;
    let mut lag = load::histogram();
    for _ in 0..tasks {
        let watched = tokio::time::timeout(Duration::from_secs(300), done_rx.recv())
            .await
            .context("delete tasks still running after 300 s")?
            .context("a task watcher vanished")??;
        lag.add(&watched)?;
    }
    Ok(DeleteOutcome {
        users,
        elapsed: started.elapsed(),
        enqueue: enqueue.latency,
        lag,
    })
}

/// Watches one task to its end; the lag of every update after the first of each stream (which is
/// the task as it was when the watch began, not a change). A stream cut by the server (a
/// connection past its maximum age) is resumed, as any client would.
async fn watch_task(channel: Channel, task_id: String) -> anyhow::Result<Histogram<u64>> {
    let mut lag = load::histogram();
    let mut resumed = 0;
    loop {
        match watch_task_stream(channel.clone(), &task_id, &mut lag).await {
            Ok(()) => return Ok(lag),
            Err(err) if resumed < 3 && err.downcast_ref::<tonic::Status>().is_some() => {
                resumed += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// One WatchTask stream: `Ok` once the task completed; a `tonic::Status` error when the stream
/// broke.
async fn watch_task_stream(
    channel: Channel,
    task_id: &str,
    lag: &mut Histogram<u64>,
) -> anyhow::Result<()> {
    let mut stream = TaskServiceClient::new(channel)
        .watch_task(pb::WatchTaskRequest {
            task_id: task_id.to_owned(),
        })
        .await?
        .into_inner();
    let mut first = true;
    while let Some(message) = stream.message().await? {
        let Some(task) = message.task else { continue };
        if !first
            && let Some(at) = task
                .updated_at
                .as_ref()
                .and_then(roster::grpc::convert::micros)
        {
            load::record(lag, since_micros(at));
        }
        first = false;
        match pb::TaskStatus::try_from(task.status) {
            Ok(pb::TaskStatus::Completed) => return Ok(()),
            Ok(pb::TaskStatus::Failed | pb::TaskStatus::Canceled) => {
                bail!("task {task_id} ended {:?}: {:?}", task.status, task.error)
            }
            _ => {}
        }
    }
    bail!("WatchTask of {task_id} ended before the task did")
}
