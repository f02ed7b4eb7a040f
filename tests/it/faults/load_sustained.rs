//! Sustained load: 50 concurrent clients run a mix of upserts, partial updates, gets, queries and
//! deletes against the real binary for a bounded time (10 s; `ROSTER_FAULT_SECS` for longer).
//! No call fails except with RESOURCE_EXHAUSTED from load shedding, a shed call changes nothing,
//! every client reads its own acknowledged writes back, and the process's resident memory stays
//! under a bound and does not keep growing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use roster::pb::{GetUserRequest, UpdateUsersPartialRequest, UpdateUsersRequest};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::writers::*;
use crate::support::*;

const CLIENTS: usize = 50;
/// Connections the clients share (HTTP/2 multiplexes the rest).
const CONNECTIONS: usize = 5;
/// Users each client owns and overwrites.
const OWN_USERS: usize = 20;
/// Calls served at once; the 50 clients go past it, so some calls are shed.
const MAX_CONCURRENT: &str = "32";
/// A client's pause after being shed.
const SHED_BACKOFF: Duration = Duration::from_millis(25);
/// Resident memory bound for the whole run.
const RSS_BOUND_KIB: u64 = 256 * 1024;
/// Growth allowed from the first half's peak to the second half's: half the first peak, at least
/// 32 MiB.
const RSS_GROWTH_FLOOR_KIB: u64 = 32 * 1024;

/// What one client did.
#[derive(Default)]
struct Tally {
    ok: BTreeMap<&'static str, usize>,
    shed: usize,
    /// Anything but OK and RESOURCE_EXHAUSTED, or a read that did not see the client's own write.
    wrong: Vec<String>,
    tasks: Vec<(String, Vec<String>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_of_mixed_calls_get_only_answers_or_shedding_and_memory_stays_bounded() {
    let scale = scale();
    let started = Instant::now();
    let db = TestDb::create().await;
    let roster = Process::launch("load", db.url())
        .args(&["--max-concurrent-requests", MAX_CONCURRENT])
        .start()
        .await;
    let channels: Vec<Channel> = (0..CONNECTIONS).map(|_| roster.channel()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_rss(
        roster.pid(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        clients.spawn(client(channels[c % CONNECTIONS].clone(), c, stop.clone()));
    }
    tokio::time::sleep(scale.load).await;
    stop.store(true, Ordering::Relaxed);
    let tallies = clients.join_all().await;
    let rss = sampler.await.expect("the memory sampler");
    let elapsed = started.elapsed();

    let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut shed, mut wrong, mut tasks) = (0, Vec::new(), Vec::new());
    for tally in tallies {
        for (op, n) in tally.ok {
            *ok.entry(op).or_insert(0) += n;
        }
        shed += tally.shed;
        wrong.extend(tally.wrong);
        tasks.extend(tally.tasks);
    }
    let total_ok: usize = ok.values().sum();
    eprintln!(
        "{CLIENTS} clients for {:?}: {total_ok} calls OK {ok:?}, {shed} shed",
        scale.load
    );
    assert!(
        wrong.is_empty(),
        "{} call(s) went wrong under load:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(30)].join("\n")
    );
    for op in ["upsert", "partial", "get", "query", "delete"] {
        assert!(ok.contains_key(op), "no {op} call succeeded: {ok:?}");
    }

    // Memory: bounded, and not still climbing in the second half.
    assert!(rss.len() >= 4, "too few memory samples: {rss:?}");
    let (first, second) = rss.split_at(rss.len() / 2);
    let first_max = first.iter().copied().max().unwrap_or(0);
    let second_max = second.iter().copied().max().unwrap_or(0);
    let peak = first_max.max(second_max);
    eprintln!(
        "resident memory: first half peak {} MiB, second half peak {} MiB ({} samples)",
        first_max / 1024,
        second_max / 1024,
        rss.len()
    );
    assert!(
        peak <= RSS_BOUND_KIB,
        "resident memory reached {peak} KiB, over {RSS_BOUND_KIB} KiB"
    );
    let allowed = first_max + (first_max / 2).max(RSS_GROWTH_FLOOR_KIB);
    assert!(
        second_max <= allowed,
        "resident memory kept growing: first half peak {first_max} KiB, second half peak \
         {second_max} KiB (allowed {allowed} KiB)"
    );

    // The deletes' tasks finish.
    let ch = roster.channel();
    for (task_id, ids) in &tasks {
        wait_completed_ok(&ch, task_id, ids).await;
    }
    eprintln!(
        "load test took {:?} ({} delete tasks checked)",
        started.elapsed().max(elapsed),
        tasks.len()
    );
}

/// One client: a fixed mix of calls on its own users, until `stop`. It remembers what it was
/// told OK and checks every read against that; a shed call must have changed nothing.
async fn client(channel: Channel, c: usize, stop: Arc<AtomicBool>) -> Tally {
    let mut users = users_client(&channel);
    let mut tally = Tally::default();
    let own: Vec<String> = (0..OWN_USERS).map(|k| format!("l{c:02}-{k:02}")).collect();
    // id -> custom.seq last acknowledged.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (c as u64 + 1);
    let mut seq: i64 = 0;
    let mut victims = 0usize;
    while !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        seq += 1;
        let pick = |n: u64| usize::try_from(rng % n).expect("small");
        let roll = rng % 20;
        let existing: Vec<&String> = expected.keys().collect();
        let call = if existing.is_empty() || roll < 8 {
            // Upsert 3 own users.
            let start = pick(OWN_USERS as u64);
            let ids: Vec<String> = (0..3)
                .map(|i| own[(start + i) % OWN_USERS].clone())
                .collect();
            let request = UpdateUsersRequest {
                users: ids
                    .iter()
                    .map(|id| {
                        let body = user(id)
                            .with_name(&format!("Load {id}"))
                            .with_custom(json!({"client": c, "seq": seq}));
                        (id.clone(), body)
                    })
                    .collect(),
            };
            let outcome = users.update_users(request).await.map(|r| {
                for id in &ids {
                    expected.insert(id.clone(), seq);
                }
                r.into_inner().users.len()
            });
            (
                "upsert",
                outcome.map(|n| {
                    (n == 3)
                        .then_some(())
                        .ok_or("upsert answered wrong count".to_owned())
                }),
            )
        } else if roll < 11 {
            let id = existing[pick(existing.len() as u64)].clone();
            let request = UpdateUsersPartialRequest {
                users: vec![partial(&id, json!({"seq": seq, "note.by": c}), &[])],
            };
            let outcome = users.update_users_partial(request).await.map(|r| {
                let stored = custom_of(&r.into_inner().users[&id]);
                expected.insert(id.clone(), seq);
                check_seq(&id, &stored, seq)
            });
            ("partial", outcome)
        } else if roll < 15 {
            let id = existing[pick(existing.len() as u64)].clone();
            let want = expected[&id];
            let outcome = users
                .get_user(GetUserRequest {
                    id: id.clone(),
                    include_deleted: false,
                })
                .await
                .map(|r| {
                    let user = r.into_inner().user.expect("GetUser without a user");
                    check_seq(&id, &custom_of(&user), want)
                });
            ("get", outcome)
        } else if roll < 19 {
            let outcome = users
                .query_users(filter_query(json!({"client": c})))
                .await
                .map(|r| {
                    let mut found: Vec<String> =
                        r.into_inner().users.into_iter().map(|u| u.id).collect();
                    found.sort();
                    let want: Vec<String> = expected.keys().cloned().collect();
                    (found == want).then_some(()).ok_or(format!(
                        "QueryUsers client={c} listed {found:?}, its live users are {want:?}"
                    ))
                });
            ("query", outcome)
        } else {
            // A user of its own made to be deleted (soft), so the others stay live.
            let id = format!("l{c:02}-v{victims:03}");
            victims += 1;
            let created = users
                .update_users(UpdateUsersRequest {
                    users: [(id.clone(), user(&id))].into(),
                })
                .await;
            let outcome = match created {
                Err(status) => Err(status),
                Ok(_) => users
                    .delete_users(delete_request(std::slice::from_ref(&id), "soft"))
                    .await
                    .map(|r| {
                        tally.tasks.push((r.into_inner().task_id, vec![id.clone()]));
                    })
                    .map(Ok),
            };
            ("delete", outcome)
        };
        if record(&mut tally, c, call) == Code::ResourceExhausted {
            // As a well-behaved client does: back off a little before trying again.
            tokio::time::sleep(SHED_BACKOFF).await;
        }
    }
    tally
}

fn check_seq(id: &str, custom: &serde_json::Value, want: i64) -> Result<(), String> {
    (custom["seq"] == json!(want)).then_some(()).ok_or(format!(
        "{id} reads custom {custom}, its last acknowledged seq is {want}"
    ))
}

/// Counts the outcome of one call; returns its code.
fn record(
    tally: &mut Tally,
    c: usize,
    (op, outcome): (&'static str, Result<Result<(), String>, Status>),
) -> Code {
    match outcome {
        Ok(Ok(())) => {
            *tally.ok.entry(op).or_insert(0) += 1;
            Code::Ok
        }
        Ok(Err(mismatch)) => {
            tally.wrong.push(format!("client {c} {op}: {mismatch}"));
            Code::Ok
        }
        Err(status) if status.code() == Code::ResourceExhausted => {
            tally.shed += 1;
            Code::ResourceExhausted
        }
        Err(status) => {
            tally.wrong.push(format!(
                "client {c} {op}: {:?} {}",
                status.code(),
                status.message()
            ));
            status.code()
        }
    }
}
