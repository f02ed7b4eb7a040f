//! Clocks after locks: 8 concurrent writers of every kind of change, and still the feed's times
//! never step back: `at` never decreases along the sequence, and a user's `updated_at` never
//! decreases along that user's events.

use roster::pb::{
    BanUserRequest, BlockUsersRequest, CreateDeviceRequest, DeactivateUsersRequest,
    DeleteDeviceRequest, ReactivateUsersRequest, RevokeUserTokensRequest, UnbanUserRequest,
    UnblockUsersRequest,
};

use tonic::Status;

use super::*;

const WRITERS: usize = 8;
/// Rounds of every kind of change per writer (`ROSTER_FAULT_LONG=1`: ten times as many).
const ROUNDS: usize = 4;

fn rounds() -> usize {
    match std::env::var("ROSTER_FAULT_LONG").as_deref() {
        Ok("1") | Ok("true") | Ok("yes") => ROUNDS * 10,
        _ => ROUNDS,
    }
}

fn micros(at: &Option<prost_types::Timestamp>) -> i64 {
    let at = at.as_ref().expect("a time");
    at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000
}

/// One writer's round: each kind of change once, on the writer's own two users and on one user
/// every writer shares (so writers also queue on one row).
async fn one_round(srv: &Server, w: usize, r: usize) {
    let me = format!("clk{w}-a");
    let other = format!("clk{w}-b");
    let tag = format!("w{w}r{r}");
    let ok = |what: &str, s: Status| -> ! { panic!("writer {w} round {r} {what}: {s:?}") };
    srv.upsert([
        user(&me).with_name(&tag),
        user(&other).with_name(&tag),
        user("clk-shared").with_name(&tag),
    ])
    .await
    .unwrap_or_else(|s| ok("UpdateUsers", s));
    srv.update_partial([
        partial(&me, json!({"n": r}), &[]),
        partial("clk-shared", json!({"by": tag}), &[]),
    ])
    .await
    .unwrap_or_else(|s| ok("UpdateUsersPartial", s));

    let mut moderation = srv.moderation();
    moderation
        .ban_user(BanUserRequest {
            target_user_id: me.clone(),
            reason: Some(tag.clone()),
            ..BanUserRequest::default()
        })
        .await
        .unwrap_or_else(|s| ok("BanUser", s));
    moderation
        .unban_user(UnbanUserRequest {
            target_user_id: me.clone(),
            created_by_id: None,
        })
        .await
        .unwrap_or_else(|s| ok("UnbanUser", s));
    moderation
        .block_users(BlockUsersRequest {
            user_id: me.clone(),
            blocked_user_id: other.clone(),
        })
        .await
        .unwrap_or_else(|s| ok("BlockUsers", s));
    moderation
        .unblock_users(UnblockUsersRequest {
            user_id: me.clone(),
            blocked_user_id: other.clone(),
        })
        .await
        .unwrap_or_else(|s| ok("UnblockUsers", s));

    let mut devices = srv.devices();
    let device = format!("d-{tag}");
    devices
        .create_device(CreateDeviceRequest {
            user_id: me.clone(),
            id: device.clone(),
            push_provider: "firebase".to_owned(),
            ..CreateDeviceRequest::default()
        })
        .await
        .unwrap_or_else(|s| ok("CreateDevice", s));
    devices
        .delete_device(DeleteDeviceRequest {
            user_id: me.clone(),
            id: device,
        })
        .await
        .unwrap_or_else(|s| ok("DeleteDevice", s));

    srv.tokens()
        .revoke_user_tokens(RevokeUserTokensRequest {
            user_ids: vec![me.clone(), "clk-shared".to_owned()],
            before: None,
        })
        .await
        .unwrap_or_else(|s| ok("RevokeUserTokens", s));

    let mut roles = RoleServiceClient::new(srv.channel());
    let role = format!("clk-role-{tag}").to_lowercase();
    roles
        .create_role(CreateRoleRequest { name: role.clone() })
        .await
        .unwrap_or_else(|s| ok("CreateRole", s));
    roles
        .delete_role(DeleteRoleRequest { name: role })
        .await
        .unwrap_or_else(|s| ok("DeleteRole", s));

    // The lifecycle: deactivate and reactivate, delete and restore, each a task the worker ends.
    let mut users = srv.users();
    let task = users
        .deactivate_users(DeactivateUsersRequest {
            user_ids: vec![other.clone()],
            ..DeactivateUsersRequest::default()
        })
        .await
        .unwrap_or_else(|s| ok("DeactivateUsers", s))
        .into_inner()
        .task_id;
    srv.wait_for_task(&task).await;
    let task = users
        .reactivate_users(ReactivateUsersRequest {
            user_ids: vec![other.clone()],
            ..ReactivateUsersRequest::default()
        })
        .await
        .unwrap_or_else(|s| ok("ReactivateUsers", s))
        .into_inner()
        .task_id;
    srv.wait_for_task(&task).await;
    let task = users
        .delete_users(DeleteUsersRequest {
            user_ids: vec![other.clone()],
            ..DeleteUsersRequest::default()
        })
        .await
        .unwrap_or_else(|s| ok("DeleteUsers", s))
        .into_inner()
        .task_id;
    srv.wait_for_task(&task).await;
    let task = users
        .restore_users(RestoreUsersRequest {
            user_ids: vec![other],
            ..RestoreUsersRequest::default()
        })
        .await
        .unwrap_or_else(|s| ok("RestoreUsers", s))
        .into_inner()
        .task_id;
    srv.wait_for_task(&task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_times_never_decrease_along_the_feed_under_eight_concurrent_writers_of_every_kind() {
    let srv = std::sync::Arc::new(Launch::new().start().await);
    let rounds = rounds();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let srv = srv.clone();
        writers.spawn(async move {
            for r in 0..rounds {
                one_round(&srv, w, r).await;
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.expect("writer");
    }

    // Everything up to a marker written after the writers ended.
    srv.upsert_ok([user("clk-marker")]).await;
    let mut stream = roster::pb::event_service_client::EventServiceClient::new(srv.channel())
        .watch_user_events(roster::pb::WatchUserEventsRequest::default())
        .await
        .expect("WatchUserEvents")
        .into_inner();
    let mut events: Vec<UserChangeEvent> = Vec::new();
    let read = async {
        loop {
            let message = stream.message().await.expect("feed").expect("feed open");
            let Some(event) = message.event else { continue };
            if event.user_id == "clk-marker" {
                break;
            }
            events.push(event);
        }
    };
    tokio::time::timeout(RUN, read)
        .await
        .expect("the feed reaches the marker");

    // Every writer's every change is there: 19 per round (3 creates or updates, 2 partial
    // updates, 4 moderation, 2 devices, 2 revocations, 2 roles, 4 lifecycle changes).
    let kinds: BTreeSet<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        events.len(),
        WRITERS * rounds * 19,
        "events in the feed, by kind: {kinds:?}"
    );
    for kind in [
        "user.created",
        "user.updated",
        "user.banned",
        "user.unbanned",
        "user.deactivated",
        "user.reactivated",
        "user.deleted",
        "user.restored",
        "role.created",
        "role.deleted",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }

    let mut steps_back = Vec::new();
    for pair in events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a.sequence < b.sequence, "the feed is in sequence order");
        if micros(&b.at) < micros(&a.at) {
            steps_back.push(format!(
                "#{} {} {} at {} then #{} {} {} at {} ({} us back)",
                a.sequence,
                a.kind,
                a.user_id,
                micros(&a.at),
                b.sequence,
                b.kind,
                b.user_id,
                micros(&b.at),
                micros(&a.at) - micros(&b.at)
            ));
        }
    }
    assert!(
        steps_back.is_empty(),
        "{} of {} events step back in time along the feed, e.g. {:?}",
        steps_back.len(),
        events.len(),
        &steps_back[..steps_back.len().min(5)]
    );

    let mut last_updated: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for event in &events {
        let Some(snapshot) = &event.user else {
            continue;
        };
        let updated = micros(&snapshot.updated_at);
        if let Some((sequence, before)) =
            last_updated.insert(&event.user_id, (event.sequence, updated))
        {
            assert!(
                updated >= before,
                "{}: updated_at {updated} in #{} after {before} in #{sequence}",
                event.user_id,
                event.sequence
            );
        }
    }

    let srv = std::sync::Arc::try_unwrap(srv).unwrap_or_else(|_| panic!("writers hold the server"));
    srv.stop().await.expect("roster stops cleanly");
}

/// A statement for the stamp tests' raw sessions.
fn pg(sql: &str) -> sea_orm::Statement {
    sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql)
}

/// For the tests of `roster_feed_stamp` itself (PostgreSQL only): a migrated database and two
/// pools of one connection each, so that each is one server session held across statements.
/// `None`, after saying why, when the suite runs on SQLite.
async fn two_stamp_sessions(
    test: &str,
) -> Option<(
    TestDb,
    sea_orm::DatabaseConnection,
    sea_orm::DatabaseConnection,
)> {
    use migrations::{Migrator, MigratorTrait};
    use sea_orm::{ConnectOptions, Database};
    if backend() != Backend::Postgres {
        skip(
            test,
            "the stamp is PostgreSQL's; it needs server sessions held across statements (runs \
             with ROSTER_TEST_DB=postgres)",
        );
        return None;
    }
    let db = TestDb::create().await;
    let connect = |url: &str| {
        let mut options = ConnectOptions::new(url.to_owned());
        options.max_connections(1).sqlx_logging(false);
        Database::connect(options)
    };
    let a = connect(db.url()).await.expect("connect");
    Migrator::up(&a, None).await.expect("migrate");
    let b = connect(db.url()).await.expect("connect");
    Some((db, a, b))
}

/// The stamp (`roster_feed_stamp`, PostgreSQL) holds its lock for the session, not the
/// transaction, so that commits need not wait for each other: a stamp cancelled while it holds
/// the lock must still release it, or every later append would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_cancelled_while_it_holds_the_feed_lock_releases_it() {
    use migrations::FEED_STAMP_LOCK;
    let Some((_db, writer, other)) = two_stamp_sessions(
        "feed::clock::a_stamp_cancelled_while_it_holds_the_feed_lock_releases_it",
    )
    .await
    else {
        return;
    };
    let pid: i32 = writer
        .query_one_raw(pg("SELECT pg_backend_pid() AS pid"))
        .await
        .expect("pid")
        .expect("a row")
        .try_get("", "pid")
        .expect("pid");
    // Drawing millions of sequences keeps the stamp inside its lock for seconds.
    let long = tokio::spawn(async move {
        let result = writer
            .execute_raw(pg("SELECT count(*) FROM roster_feed_stamp(0, 20000000)"))
            .await;
        (writer, result)
    });
    let held = format!(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = {pid} AND classid = {} AND objid = {}",
        FEED_STAMP_LOCK >> 32,
        FEED_STAMP_LOCK & 0xffff_ffff
    );
    let count = |sql: String| {
        let other = &other;
        async move {
            other
                .query_one_raw(pg(&sql))
                .await
                .expect("count")
                .expect("a row")
                .try_get::<i64>("", "n")
                .expect("n")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(held.clone()).await == 0 {
        assert!(
            Instant::now() < deadline && !long.is_finished(),
            "the stamp never held its lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other
        .execute_raw(pg(&format!("SELECT pg_cancel_backend({pid})")))
        .await
        .expect("cancel");
    let (writer, result) = long.await.expect("join");
    let err = result.expect_err("the stamp was cancelled").to_string();
    assert!(err.contains("canceling statement"), "{err}");
    assert_eq!(
        count(held).await,
        0,
        "the cancelled stamp's session still holds the feed stamp lock"
    );
    // And the next append's stamp gets it at once.
    other
        .execute_raw(pg("SET lock_timeout = '2s'"))
        .await
        .expect("set");
    other
        .execute_raw(pg("SELECT count(*) FROM roster_feed_stamp(1, 1)"))
        .await
        .expect("a later stamp takes the lock");
    writer.close().await.expect("close");
    other.close().await.expect("close");
}

/// The stamp's lock is held only while it draws (PostgreSQL): a writer that has stamped its
/// events and not yet committed does not hold back the next writer's stamp, so commits (and
/// their WAL flushes) of different users' writes need not run one at a time. The clock is still
/// one order: the second stamp's sequence and time are past the first's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_stamped_and_has_not_committed_does_not_hold_back_the_next() {
    use sea_orm::TransactionTrait;
    let Some((_db, a, b)) = two_stamp_sessions(
        "feed::clock::a_writer_that_stamped_and_has_not_committed_does_not_hold_back_the_next",
    )
    .await
    else {
        return;
    };
    let stamp = |row: sea_orm::QueryResult| -> (i64, i64) {
        (
            row.try_get("", "stamp_seq").expect("seq"),
            row.try_get("", "stamp_at").expect("at"),
        )
    };
    let first = a.begin().await.expect("begin");
    let (first_seq, first_at) = stamp(
        first
            .query_one_raw(pg("SELECT * FROM roster_feed_stamp(2000, 1)"))
            .await
            .expect("stamp")
            .expect("a row"),
    );
    // Still open. The next writer's stamp must not wait for it.
    let second = b.begin().await.expect("begin");
    second
        .execute_raw(pg("SET LOCAL lock_timeout = '2s'"))
        .await
        .expect("set");
    let (second_seq, second_at) = stamp(
        second
            .query_one_raw(pg("SELECT * FROM roster_feed_stamp(1000, 1)"))
            .await
            .expect("the second stamp waited for the first writer's commit")
            .expect("a row"),
    );
    assert!(second_seq > first_seq, "{second_seq} after {first_seq}");
    assert_eq!(
        (first_at, second_at),
        (2000, 2000),
        "a stamp asked for an earlier time gets the clock's"
    );
    second.commit().await.expect("commit");
    first.commit().await.expect("commit");
    a.close().await.expect("close");
    b.close().await.expect("close");
}
