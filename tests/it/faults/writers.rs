//! What the fault and load tests share: how long the scenarios run, writers that record which
//! batches roster acknowledged, a check that every acknowledged batch is stored whole and no batch
//! is stored in part, and the real process's resident memory. (The private PostgreSQL cluster an
//! outage stops and starts is `support::db::PgCluster`.)
//!
//! Durations: `ROSTER_FAULT_SECS=<n>` runs the sustained load for `n` seconds and scales the
//! outage and crash scenarios with it (one outage, one crash per 20 s); `ROSTER_FAULT_LONG=1` is
//! `ROSTER_FAULT_SECS=300`. Unset, the scenarios are sized for CI.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roster::pb::{UpdateUsersRequest, User};
use serde_json::json;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{UserRequestExt, custom_of, user, users_client};

// ---------------------------------------------------------------------------------------------
// How long

/// Sizes of the scenarios, from `ROSTER_FAULT_SECS` / `ROSTER_FAULT_LONG`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// How long the sustained load runs.
    pub load: Duration,
    /// Database outages in the outage scenario.
    pub outages: usize,
    /// How long each outage lasts.
    pub outage: Duration,
    /// SIGKILLs in the crash scenario.
    pub crashes: usize,
    /// Load before each SIGKILL.
    pub before_crash: Duration,
}

pub fn scale() -> Scale {
    let secs = std::env::var("ROSTER_FAULT_SECS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("ROSTER_FAULT_SECS must be a number of seconds: {s:?}"))
        })
        .or_else(|| match std::env::var("ROSTER_FAULT_LONG").as_deref() {
            Ok("1") | Ok("true") | Ok("yes") => Some(300),
            _ => None,
        });
    match secs {
        None => Scale {
            load: Duration::from_secs(10),
            outages: 1,
            outage: Duration::from_secs(4),
            crashes: 1,
            before_crash: Duration::from_secs(3),
        },
        Some(secs) => {
            let secs = secs.max(1);
            let rounds = usize::try_from(secs / 20).unwrap_or(usize::MAX).max(1);
            Scale {
                load: Duration::from_secs(secs),
                outages: rounds,
                outage: Duration::from_secs(5),
                crashes: rounds,
                before_crash: Duration::from_secs(5),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writers and what they were told

/// Users per UpdateUsers batch; each batch is all or nothing.
pub const BATCH: usize = 5;

/// One UpdateUsers call and its answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The batch marker, also the prefix of its users' ids.
    pub batch: String,
    pub ids: Vec<String>,
    /// `None` when roster answered OK.
    pub error: Option<(Code, String)>,
    /// When the answer arrived.
    pub answered: Instant,
}

impl Attempt {
    pub fn acknowledged(&self) -> bool {
        self.error.is_none()
    }
}

/// Writes batches of `BATCH` new users (`<prefix>-<seq>-<i>`, each with `custom.batch`) one after
/// another until `stop` is set, pausing `pause` after each answer; counts acknowledged batches in
/// `acked`; returns every attempt.
pub async fn write_batches(
    channel: Channel,
    prefix: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Vec<Attempt> {
    let mut client = users_client(&channel);
    let mut attempts = Vec::new();
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let batch = format!("{prefix}-{seq:05}");
        seq += 1;
        let ids: Vec<String> = (0..BATCH).map(|i| format!("{batch}-{i}")).collect();
        let users = ids
            .iter()
            .map(|id| {
                let request = user(id)
                    .with_name(&format!("Writer {prefix}"))
                    .with_custom(json!({"batch": batch, "size": BATCH}));
                (id.clone(), request)
            })
            .collect();
        let outcome = client.update_users(UpdateUsersRequest { users }).await;
        let error = match outcome {
            Ok(response) => {
                let stored = response.into_inner().users;
                assert_eq!(
                    stored.len(),
                    BATCH,
                    "UpdateUsers {batch} answered OK with {} users",
                    stored.len()
                );
                acked.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(status) => Some((status.code(), status.message().to_owned())),
        };
        attempts.push(Attempt {
            batch,
            ids,
            error,
            answered: Instant::now(),
        });
        tokio::time::sleep(pause).await;
    }
    attempts
}

/// Checks the stored users against the attempts: an acknowledged batch is stored whole, any
/// batch is stored whole or not at all, each stored user carries its own batch marker, and no
/// user of `prefix` exists that no attempt wrote. Panics listing every violation (up to 30).
pub fn assert_batches_durable(
    what: &str,
    prefix: &str,
    attempts: &[Attempt],
    stored: &BTreeMap<String, User>,
) {
    let mut problems = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for attempt in attempts {
        let (present, missing): (Vec<&String>, Vec<&String>) =
            attempt.ids.iter().partition(|id| stored.contains_key(*id));
        written.extend(attempt.ids.iter().cloned());
        if attempt.acknowledged() && !missing.is_empty() {
            problems.push(format!(
                "batch {} was acknowledged OK but {missing:?} are missing",
                attempt.batch
            ));
        } else if !present.is_empty() && !missing.is_empty() {
            problems.push(format!(
                "batch {} (answered {:?}) is half-applied: {present:?} stored, {missing:?} not",
                attempt.batch, attempt.error
            ));
        }
        for id in present {
            let marker = custom_of(&stored[id])["batch"].clone();
            if marker != json!(attempt.batch) {
                problems.push(format!(
                    "{id} carries batch marker {marker}, not {:?}",
                    attempt.batch
                ));
            }
        }
    }
    for id in stored.keys().filter(|id| id.starts_with(prefix)) {
        if !written.contains(id) {
            problems.push(format!("{id} is stored but no attempt wrote it"));
        }
    }
    let acknowledged = attempts.iter().filter(|a| a.acknowledged()).count();
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s) over {} batches ({acknowledged} acknowledged), first ones:\n{}",
        problems.len(),
        attempts.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How many answers of each code, for messages.
pub fn code_counts<'a>(codes: impl IntoIterator<Item = &'a Code>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for code in codes {
        *counts.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Memory

/// Resident memory (VmRSS) of process `pid`, in KiB; `None` once the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Samples `rss_kib(pid)` every `every` until `stop` is set.
pub async fn sample_rss(pid: u32, every: Duration, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(kib) = rss_kib(pid) {
            samples.push(kib);
        }
        tokio::time::sleep(every).await;
    }
    samples
}
