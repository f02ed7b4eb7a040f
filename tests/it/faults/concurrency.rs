//! Concurrent replaces, partial updates, soft and hard deletes and restores of the same few
//! users from many clients: every outcome is one a serial order of the acknowledged calls could
//! produce.
//!
//! Each write stamps a unique tag on every field it touches (a replace: name, image, teams and
//! `custom = {a, b}`; a partial update: the same fields by `set`, or all but `image`, which it
//! unsets), so a row that mixes two writes is visible at a glance. The checks:
//! - no row, in the final state or in any change-feed snapshot, mixes fields of two writes;
//! - the final tag is one an acknowledged write set, and no acknowledged write on that user began
//!   after it ended (it would have overwritten it);
//! - refused writes left no trace: their tags are nowhere;
//! - a user ends deleted, gone or live only if the acknowledged deletes, restores and re-creating
//!   replaces allow it, and the feed's last event for it agrees with what `GetUser` says;
//! - every refusal is one the contract names for the situation (a deleted user, an unknown user,
//!   restoring a live or pruned user), never INTERNAL, ABORTED or UNAVAILABLE.
//!
//! Bounded: `ROUNDS` rounds of `CLIENTS` clients doing `OPS` calls each; `ROSTER_FAULT_LONG=1`
//! runs ten times as many rounds and twice the calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use roster::pb::event_service_client::EventServiceClient;
use roster::pb::{
    DeleteUsersRequest, GetUserRequest, RestoreUsersRequest, User, UserChangeEvent,
    WatchUserEventsRequest,
};
use serde_json::json;
use tokio::time::Instant;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::*;

const USERS: usize = 3;
const CLIENTS: usize = 8;
const ROUNDS: usize = 3;
const OPS: usize = 12;

fn long() -> bool {
    std::env::var("ROSTER_FAULT_LONG").is_ok_and(|v| v == "1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Replace,
    Partial,
    /// A partial update that unsets `image` and sets the rest.
    PartialUnset,
    SoftDelete,
    HardDelete,
    Restore,
}

impl OpKind {
    fn writes_tag(self) -> bool {
        matches!(
            self,
            OpKind::Replace | OpKind::Partial | OpKind::PartialUnset
        )
    }
}

/// What one call did, as its client saw it.
#[derive(Debug, Clone)]
struct Op {
    user: String,
    kind: OpKind,
    tag: String,
    started: Instant,
    /// When the answer arrived; for deletes, when their task had finished.
    ended: Instant,
    /// `None`: acknowledged OK; otherwise the refusal (code and ErrorInfo reason).
    refused: Option<(Code, String)>,
}

impl Op {
    fn ok(&self) -> bool {
        self.refused.is_none()
    }
}

/// A small deterministic generator (so a failing round can be replayed from its seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

/// The tuple a write leaves: `(name, image, teams, custom)`.
fn tuple_of(
    user: &User,
) -> (
    Option<String>,
    Option<String>,
    Vec<String>,
    serde_json::Value,
) {
    (
        user.name.clone(),
        user.image.clone(),
        user.teams.clone(),
        custom_of(user),
    )
}

/// The tag of a row whose fields all come from one write; `Err` describes a mixed row.
fn tag_of(user: &User) -> Result<String, String> {
    let (name, image, teams, custom) = tuple_of(user);
    let tag = name.ok_or_else(|| format!("{}: no name", user.id))?;
    let image_expected = if tag.starts_with('U') {
        None
    } else {
        Some(tag.clone())
    };
    if image != image_expected
        || teams != [tag.clone()]
        || custom != json!({"a": tag.clone(), "b": tag.clone()})
    {
        return Err(format!(
            "mixed row {}: name {tag:?}, image {image:?}, teams {teams:?}, custom {custom}",
            user.id
        ));
    }
    Ok(tag)
}

async fn run_op(srv: &Server, kind: OpKind, user_id: &str, tag: &str) -> Op {
    let started = Instant::now();
    let mut users = srv.users();
    let result: Result<(), tonic::Status> = match kind {
        OpKind::Replace => srv
            .upsert([user(user_id)
                .with_name(tag)
                .with_image(tag)
                .with_teams(&[tag])
                .with_custom(json!({"a": tag, "b": tag}))])
            .await
            .map(drop),
        OpKind::Partial => srv
            .update_partial([partial(
                user_id,
                json!({"name": tag, "image": tag, "teams": [tag], "a": tag, "custom.b": tag}),
                &[],
            )])
            .await
            .map(drop),
        OpKind::PartialUnset => srv
            .update_partial([partial(
                user_id,
                json!({"name": tag, "teams": [tag], "custom.a": tag, "b": tag}),
                &["image"],
            )])
            .await
            .map(drop),
        OpKind::SoftDelete | OpKind::HardDelete => {
            let mode = if kind == OpKind::SoftDelete {
                ""
            } else {
                "hard"
            };
            let response = users
                .delete_users(DeleteUsersRequest {
                    user_ids: vec![user_id.to_owned()],
                    user: mode.into(),
                    messages: mode.into(),
                    conversations: mode.into(),
                    ..DeleteUsersRequest::default()
                })
                .await;
            match response {
                Ok(response) => {
                    srv.wait_for_task(&response.into_inner().task_id).await;
                    Ok(())
                }
                Err(status) => Err(status),
            }
        }
        OpKind::Restore => match users
            .restore_users(RestoreUsersRequest {
                user_ids: vec![user_id.to_owned()],
                ..RestoreUsersRequest::default()
            })
            .await
        {
            Ok(response) => {
                srv.wait_for_task(&response.into_inner().task_id).await;
                Ok(())
            }
            Err(status) => Err(status),
        },
    };
    let refused = result.err().map(|status| {
        let reason = status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default();
        (status.code(), reason)
    });
    Op {
        user: user_id.to_owned(),
        kind,
        tag: tag.to_owned(),
        started,
        ended: Instant::now(),
        refused,
    }
}

/// The refusals the contract allows for `kind` when other clients race on the same user.
fn refusal_allowed(kind: OpKind, code: Code, reason: &str) -> bool {
    match (kind, code, reason) {
        // Writing a user that is deleted (soft, or hard and not yet removed).
        (
            OpKind::Replace | OpKind::Partial | OpKind::PartialUnset,
            Code::FailedPrecondition,
            "USER_DELETED",
        ) => true,
        // A hard-deleted user is gone: partial updates, deletes and restores do not find it.
        (
            OpKind::Partial
            | OpKind::PartialUnset
            | OpKind::SoftDelete
            | OpKind::HardDelete
            | OpKind::Restore,
            Code::NotFound,
            "USER_NOT_FOUND",
        ) => true,
        (OpKind::Restore, Code::FailedPrecondition, "USER_NOT_DELETED" | "USER_PRUNED") => true,
        _ => false,
    }
}

/// One round: fresh users, `CLIENTS` concurrent clients, then the checks.
async fn round(srv: &Arc<Server>, round: usize, ops_per_client: usize) {
    let ids: Vec<String> = (0..USERS).map(|u| format!("r{round}-u{u}")).collect();
    let init: Vec<_> = ids
        .iter()
        .map(|id| {
            let tag = format!("R-init-{id}");
            user(id)
                .with_name(&tag)
                .with_image(&tag)
                .with_teams(&[&tag])
                .with_custom(json!({"a": tag, "b": tag}))
        })
        .collect();
    srv.upsert_ok(init).await;

    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let ids = ids.clone();
        let srv = Arc::clone(srv);
        clients.spawn(async move {
            let mut rng = Lcg((round * 1000 + client) as u64 + 1);
            let mut ops = Vec::with_capacity(ops_per_client);
            for i in 0..ops_per_client {
                let user_id = &ids[rng.next(ids.len())];
                // Writes are the common case; deletes and restores keep the lifecycle moving.
                let kind = match rng.next(20) {
                    0..=5 => OpKind::Replace,
                    6..=9 => OpKind::Partial,
                    10..=12 => OpKind::PartialUnset,
                    13..=15 => OpKind::SoftDelete,
                    16 => OpKind::HardDelete,
                    _ => OpKind::Restore,
                };
                let prefix = match kind {
                    OpKind::Replace => "R",
                    OpKind::Partial => "P",
                    OpKind::PartialUnset => "U",
                    _ => "L",
                };
                let tag = format!("{prefix}-{round}-{client}-{i}");
                ops.push(run_op(&srv, kind, user_id, &tag).await);
            }
            ops
        });
    }
    let mut ops: Vec<Op> = Vec::new();
    while let Some(joined) = clients.join_next().await {
        ops.extend(joined.expect("a client panicked"));
    }

    // What the round exercised (visible with --nocapture): acknowledged calls per kind and
    // refusals per reason.
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for op in &ops {
        let outcome = match &op.refused {
            None => format!("{:?} ok", op.kind),
            Some((_, reason)) => format!("{:?} {reason}", op.kind),
        };
        *tally.entry(outcome).or_default() += 1;
    }
    eprintln!("round {round}: {tally:?}");
    for op in &ops {
        if let Some((code, reason)) = &op.refused {
            assert!(
                refusal_allowed(op.kind, *code, reason),
                "{:?} on {} was refused with {code:?} {reason:?}, which no serial order explains",
                op.kind,
                op.user
            );
        }
    }
    let acked_tags: BTreeSet<&str> = ops
        .iter()
        .filter(|op| op.ok() && op.kind.writes_tag())
        .map(|op| op.tag.as_str())
        .collect();

    for id in &ids {
        let mine: Vec<&Op> = ops.iter().filter(|op| &op.user == id).collect();
        let acked = |kinds: &[OpKind]| -> Vec<&Op> {
            mine.iter()
                .copied()
                .filter(|op| op.ok() && kinds.contains(&op.kind))
                .collect()
        };
        let final_user = srv
            .users()
            .get_user(GetUserRequest {
                id: id.clone(),
                include_deleted: true,
            })
            .await;
        match final_user {
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "GetUser {id}: {status:?}");
                // Gone: a hard delete was acknowledged, and no re-creating replace began after
                // the last hard delete had finished.
                let last_hard = acked(&[OpKind::HardDelete])
                    .into_iter()
                    .max_by_key(|op| op.ended)
                    .unwrap_or_else(|| panic!("{id} is gone without an acknowledged hard delete"));
                for write in acked(&[OpKind::Replace]) {
                    assert!(
                        write.started < last_hard.ended,
                        "{id} is gone, yet replace {} began after the last hard delete ended",
                        write.tag
                    );
                }
            }
            Ok(response) => {
                let found = response.into_inner().user.expect("GetUser gives the user");
                let tag = tag_of(&found).unwrap_or_else(|mixed| panic!("{mixed}"));
                let writer = if tag.starts_with("R-init-") {
                    None
                } else {
                    assert!(
                        acked_tags.contains(tag.as_str()),
                        "{id} holds {tag}, which no acknowledged write set"
                    );
                    mine.iter().find(|op| op.tag == tag).copied()
                };
                // No acknowledged write on this user began after the final one had ended.
                let writer_ended = writer.map(|w| w.ended);
                for later in acked(&[OpKind::Replace, OpKind::Partial, OpKind::PartialUnset]) {
                    if later.tag == tag {
                        continue;
                    }
                    if let Some(ended) = writer_ended {
                        assert!(
                            later.started <= ended,
                            "{id} ends with {tag}, but {} began after it ended and succeeded",
                            later.tag
                        );
                    } else {
                        panic!(
                            "{id} still holds its initial tuple although {} succeeded",
                            later.tag
                        );
                    }
                }
                // It exists, so any acknowledged hard delete was followed by a re-creating
                // replace that ended after that delete began.
                if let Some(last_hard) = acked(&[OpKind::HardDelete])
                    .into_iter()
                    .max_by_key(|op| op.started)
                {
                    assert!(
                        acked(&[OpKind::Replace])
                            .iter()
                            .any(|w| w.ended > last_hard.started),
                        "{id} exists after hard delete {} with no replace after it",
                        last_hard.tag
                    );
                }
                let proves_live = acked(&[
                    OpKind::Replace,
                    OpKind::Partial,
                    OpKind::PartialUnset,
                    OpKind::Restore,
                ]);
                let deletes = acked(&[OpKind::SoftDelete, OpKind::HardDelete]);
                if found.deleted_at.is_some() {
                    // Deleted: some acknowledged delete can come after the last proof of life.
                    let last_live = proves_live.iter().map(|op| op.started).max();
                    assert!(
                        acked(&[OpKind::SoftDelete])
                            .iter()
                            .any(|d| last_live.is_none_or(|live| d.ended > live)),
                        "{id} ends deleted, but every acknowledged soft delete ended before a later write or restore began"
                    );
                } else if let Some(last_delete) = deletes.iter().map(|op| op.started).max() {
                    // Live after a delete: a restore or write can come after the last delete.
                    assert!(
                        proves_live.iter().any(|op| op.ended > last_delete),
                        "{id} ends live, but nothing that revives it ended after the last delete began"
                    );
                }
            }
        }
    }

    for op in ops.iter().filter(|op| !op.ok() && op.kind.writes_tag()) {
        assert!(!acked_tags.contains(op.tag.as_str()), "refused tag reused");
    }
    // The feed: every snapshot is one write's tuple, refused writes appear nowhere, and the last
    // event of each user agrees with its final state.
    let events = feed_of(srv, &ids).await;
    let mut last: BTreeMap<&str, &UserChangeEvent> = BTreeMap::new();
    let mut tags_in_feed = BTreeSet::new();
    for event in &events {
        last.insert(event.user_id.as_str(), event);
        if let Some(snapshot) = &event.user {
            let tag = tag_of(snapshot)
                .unwrap_or_else(|mixed| panic!("feed event {}: {mixed}", event.sequence));
            if matches!(event.kind.as_str(), "user.created" | "user.updated") {
                tags_in_feed.insert(tag);
            }
        }
    }
    for op in ops.iter().filter(|op| op.kind.writes_tag()) {
        assert_eq!(
            tags_in_feed.contains(&op.tag),
            op.ok(),
            "{} ({:?}, {:?}) in the feed: acknowledged writes are there, refused ones are not",
            op.tag,
            op.kind,
            op.refused
        );
    }
    for id in &ids {
        let event = last
            .get(id.as_str())
            .unwrap_or_else(|| panic!("no feed event for {id}"));
        let now = srv
            .users()
            .get_user(GetUserRequest {
                id: id.clone(),
                include_deleted: true,
            })
            .await;
        match now {
            Err(_) => assert_eq!(event.kind, "user.hard_deleted", "{id} is gone"),
            Ok(response) => {
                let now = response.into_inner().user.expect("user");
                let snapshot = event.user.as_ref().unwrap_or_else(|| {
                    panic!("{id} exists, its last event {} has no user", event.kind)
                });
                assert_eq!(
                    tuple_of(snapshot),
                    tuple_of(&now),
                    "{id}: last event vs GetUser"
                );
                assert_eq!(
                    snapshot.deleted_at.is_some(),
                    now.deleted_at.is_some(),
                    "{id}: deleted in the last event vs GetUser"
                );
            }
        }
    }
}

/// Every feed event about `ids`, in sequence order, up to a marker written now.
async fn feed_of(srv: &Server, ids: &[String]) -> Vec<UserChangeEvent> {
    let marker = format!("marker-{}", ids[0]);
    srv.upsert_ok([user(&marker)]).await;
    let mut wanted: Vec<String> = ids.to_vec();
    wanted.push(marker.clone());
    let mut stream = EventServiceClient::new(srv.channel())
        .watch_user_events(WatchUserEventsRequest {
            after_sequence: 0,
            kinds: Vec::new(),
            user_ids: wanted,
        })
        .await
        .expect("WatchUserEvents")
        .into_inner();
    let mut events = Vec::new();
    let read = async {
        loop {
            let message = stream
                .message()
                .await
                .expect("feed stream")
                .expect("the feed does not end");
            let Some(event) = message.event else { continue };
            if event.user_id == marker {
                break;
            }
            events.push(event);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the feed reaches the marker");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_and_deletes_end_in_a_serial_outcome() {
    let (rounds, ops) = if long() {
        (ROUNDS * 10, OPS * 2)
    } else {
        (ROUNDS, OPS)
    };
    let srv = Arc::new(Launch::new().start().await);
    for r in 0..rounds {
        round(&srv, r, ops).await;
    }
    let srv = Arc::try_unwrap(srv).unwrap_or_else(|_| panic!("clients still hold the server"));
    srv.stop().await.expect("roster stops cleanly");
}

/// Two hard deletes of one user are both accepted (the second finds it already marked). The
/// first removes it, the id is free, and a new user with that id is created and soft-deleted
/// before the second task's item runs: that item must leave the new user alone (it is
/// restorable), not remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_hard_delete_leaves_a_recreated_user_alone() {
    let srv = Launch::new()
        .config(|config| {
            // One worker, pausing before each item: the second task's item waits while the test
            // re-creates the user (the pause is a test hook of the worker, not a sleep here).
            config.task_concurrency = 1;
            config.task_item_delay_ms = 3000;
        })
        .start()
        .await;
    srv.upsert_ok([user("x").with_name("first")]).await;
    let hard = || DeleteUsersRequest {
        user_ids: vec!["x".into()],
        user: "hard".into(),
        messages: "hard".into(),
        conversations: "hard".into(),
        ..DeleteUsersRequest::default()
    };
    let mut users = srv.users();
    let first = users.delete_users(hard()).await.expect("first hard delete");
    let second = users
        .delete_users(hard())
        .await
        .expect("second hard delete");
    srv.wait_for_task(&first.into_inner().task_id).await;
    assert_eq!(
        srv.get("x").await.map_err(|s| s.code()),
        Err(Code::NotFound),
        "the first task removed x"
    );

    // The id is free: a new x, soft-deleted, while the second task's item is still paused.
    srv.upsert_ok([user("x").with_name("second")]).await;
    let soft = users
        .delete_users(DeleteUsersRequest {
            user_ids: vec!["x".into()],
            ..DeleteUsersRequest::default()
        })
        .await
        .expect("soft delete of the new x");
    srv.wait_for_task(&second.into_inner().task_id).await;
    srv.wait_for_task(&soft.into_inner().task_id).await;

    let restored = users
        .restore_users(RestoreUsersRequest {
            user_ids: vec!["x".into()],
            ..RestoreUsersRequest::default()
        })
        .await
        .expect("the new x is soft-deleted, so it can be restored");
    srv.wait_for_task(&restored.into_inner().task_id).await;
    assert_eq!(srv.get_ok("x").await.name.as_deref(), Some("second"));
}

/// 16 UpdateUsers that create the same 100 new users at once, round after round: exactly one of
/// them creates each user. The feed holds one `user.created` per user and 15 `user.updated`, and
/// every answer carries the created_at that was stored, the creator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_id_create_it_once() {
    const WRITERS: usize = 16;
    const USERS: usize = 100;
    let rounds = if long() { 20 } else { 5 };
    let srv = Arc::new(Launch::new().start().await);
    for r in 0..rounds {
        let ids: Vec<String> = (0..USERS).map(|i| format!("race{r}-{i}")).collect();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let (srv, ids) = (srv.clone(), ids.clone());
            writers.spawn(async move {
                let batch = ids
                    .iter()
                    .map(|id| user(id).with_name(&format!("writer {w}")));
                srv.upsert(batch).await.expect("UpdateUsers")
            });
        }
        let mut answers = Vec::new();
        while let Some(answer) = writers.join_next().await {
            answers.push(answer.expect("writer task"));
        }
        let events = feed_of(&srv, &ids).await;
        for id in &ids {
            let stored = srv.get_ok(id).await;
            for answer in &answers {
                assert_eq!(
                    answer[id].created_at, stored.created_at,
                    "round {r}: an answer for {id} carries another created_at than the stored one"
                );
            }
            let kinds: Vec<&str> = events
                .iter()
                .filter(|e| &e.user_id == id)
                .map(|e| e.kind.as_str())
                .collect();
            let created = kinds.iter().filter(|k| **k == "user.created").count();
            let updated = kinds.iter().filter(|k| **k == "user.updated").count();
            assert_eq!(
                (created, updated),
                (1, WRITERS - 1),
                "round {r}: {id} was reported created {created} times ({kinds:?})"
            );
        }
    }
}
