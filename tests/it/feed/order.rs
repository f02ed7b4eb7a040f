//! Concurrent writers: a follower, from zero or reconnecting with its last sequence, gets every
//! change exactly once and in order.

use super::*;

const WRITERS: usize = 8;
const CHANGES: usize = 1000;
const USERS_PER_WRITER: usize = 5;

/// One change a writer made: the user and the name it gave it (unique per change).
type Change = (String, String);

/// 8 writers, 1,000 changes in all: each writer owns 5 users and alternates full replaces
/// (UpdateUsers) and partial updates (UpdateUsersPartial), each giving its user a name no other
/// change uses. Returns every writer's changes, in the order that writer made them.
async fn run_writers(ch: &Channel) -> Vec<Vec<Change>> {
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let mut client = UserServiceClient::new(ch.clone());
        writers.spawn(async move {
            let mut made = Vec::new();
            for k in 0..CHANGES / WRITERS {
                let id = format!("w{w}-u{}", k % USERS_PER_WRITER);
                let name = format!("w{w}-c{k}");
                if k < USERS_PER_WRITER || k % 2 == 0 {
                    let users = [(id.clone(), user(&id).with_name(&name))].into();
                    client
                        .update_users(UpdateUsersRequest { users })
                        .await
                        .unwrap_or_else(|s| panic!("writer {w} UpdateUsers {id}: {s:?}"));
                } else {
                    client
                        .update_users_partial(UpdateUsersPartialRequest {
                            users: vec![partial(&id, json!({"name": name}), &[])],
                        })
                        .await
                        .unwrap_or_else(|s| panic!("writer {w} partial {id}: {s:?}"));
                }
                made.push((id, name));
            }
            (w, made)
        });
    }
    let mut all = vec![Vec::new(); WRITERS];
    while let Some(joined) = writers.join_next().await {
        let (w, made) = joined.expect("writer task");
        all[w] = made;
    }
    all
}

/// The events before the sentinel are exactly the writers' changes: each once, in strictly
/// increasing sequence, each user's changes in the order they were made, the first one of each
/// user `user.created` and the rest `user.updated`.
#[track_caller]
fn assert_exactly_the_changes(events: &[UserChangeEvent], written: &[Vec<Change>]) {
    assert_strictly_increasing(events);
    let total: usize = written.iter().map(Vec::len).sum();
    assert_eq!(total, CHANGES);
    let mut seen: BTreeMap<Change, i64> = BTreeMap::new();
    for e in events {
        let change = (e.user_id.clone(), snapshot_name(e));
        if let Some(before) = seen.insert(change.clone(), e.sequence) {
            panic!(
                "{change:?} delivered twice, at sequences {before} and {}",
                e.sequence
            );
        }
    }
    let expected: BTreeSet<Change> = written.iter().flatten().cloned().collect();
    let got: BTreeSet<Change> = seen.keys().cloned().collect();
    let missing: Vec<&Change> = expected.difference(&got).take(10).collect();
    let extra: Vec<&Change> = got.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} events for {} changes; missing (first 10) {missing:?}; unexpected {extra:?}",
        events.len(),
        expected.len()
    );
    assert_eq!(events.len(), CHANGES, "one event per change");
    // Per user, the feed's order is the order of the writes.
    let mut per_user: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in events {
        per_user.entry(e.user_id.as_str()).or_default().push(
            e.user
                .as_ref()
                .and_then(|u| u.name.as_deref())
                .unwrap_or(""),
        );
        let first = per_user[e.user_id.as_str()].len() == 1;
        let kind = if first {
            "user.created"
        } else {
            "user.updated"
        };
        assert_eq!(e.kind, kind, "kind of {:?}", brief_event(e));
        assert_eq!(e.actor, "server", "actor of {:?}", brief_event(e));
    }
    let mut written_per_user: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, name) in written.iter().flatten() {
        written_per_user.entry(id).or_default().push(name);
    }
    assert_eq!(per_user, written_per_user, "per-user order of the changes");
}

/// Runs the writers, then writes a sentinel once they are all done.
fn spawn_writers_then_sentinel(ch: &Channel) -> tokio::task::JoinHandle<Vec<Vec<Change>>> {
    let ch = ch.clone();
    tokio::spawn(async move {
        let written = run_writers(&ch).await;
        upsert_named(&ch, "sentinel", "the end").await;
        written
    })
}

fn is_sentinel(e: &UserChangeEvent) -> bool {
    e.user_id == "sentinel"
}

/// Once every write has committed, a replay from 0 reads the table as it is: the live follower
/// must have delivered the same sequences (this tells a skipped event from a lost write).
async fn assert_same_as_replay(ch: &Channel, live: &[UserChangeEvent]) {
    let mut replay = Feed::after(ch, 0).await.until(RUN, is_sentinel).await;
    replay.pop();
    let live_seqs: BTreeSet<i64> = live.iter().map(|e| e.sequence).collect();
    let replay_seqs: BTreeSet<i64> = replay.iter().map(|e| e.sequence).collect();
    let skipped: Vec<_> = replay
        .iter()
        .filter(|e| !live_seqs.contains(&e.sequence))
        .map(brief_event)
        .collect();
    let invented: Vec<i64> = live_seqs.difference(&replay_seqs).copied().collect();
    assert!(
        skipped.is_empty() && invented.is_empty(),
        "the live follower skipped committed events that a replay from 0 delivers: {skipped:?}; \
         it delivered sequences the replay does not have: {invented:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_from_zero_gets_every_concurrent_change_exactly_once_in_order() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let mut feed = Feed::after(&ch, 0).await;
    let started = Instant::now();
    let writers = spawn_writers_then_sentinel(&ch);

    let mut events = feed.until(RUN, is_sentinel).await;
    let written = writers.await.expect("writers");
    eprintln!(
        "followed {} events from 8 writers in {:?}",
        events.len(),
        started.elapsed()
    );
    events.pop();
    assert_same_as_replay(&ch, &events).await;
    assert_exactly_the_changes(&events, &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_reconnects_with_its_last_sequence_misses_nothing_and_repeats_nothing() {
    let srv = Launch::new().start().await;
    let ch = srv.channel();
    let writers = spawn_writers_then_sentinel(&ch);

    // Disconnect every 97 events (while the writers are still writing), resume from the last
    // sequence received.
    let deadline = Instant::now() + RUN;
    let mut events: Vec<UserChangeEvent> = Vec::new();
    let mut reconnects = 0;
    'outer: loop {
        let after = events.last().map_or(0, |e| e.sequence);
        let mut feed = Feed::after(&ch, after).await;
        for _ in 0..97 {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = feed.next(left).await;
            let done = is_sentinel(&event);
            events.push(event);
            if done {
                break 'outer;
            }
        }
        drop(feed);
        reconnects += 1;
    }
    let written = writers.await.expect("writers");
    eprintln!("{} events over {reconnects} reconnects", events.len());
    assert!(
        reconnects >= 5,
        "the follower should have reconnected several times"
    );
    events.pop();
    assert_same_as_replay(&ch, &events).await;
    assert_exactly_the_changes(&events, &written);
}
