//! The change feed's SQL: appends (inside the writer's transaction), ordered reads, retention.
//!
//! Sequences are allocated when a row is inserted, but transactions commit in their own order: on
//! PostgreSQL a reader can see sequence 11 committed while 10 is still in flight. Every writer
//! therefore holds a shared advisory lock from just before it appends until it ends; a follower
//! that meets a gap takes the same lock exclusively for an instant, which waits for exactly the
//! writers in flight (never for unrelated transactions). Once it has the lock, whatever is still
//! missing below the sequences it has seen was rolled back, and the gap is final.
//! SQLite has one writer at a time, so its sequences commit in order: a gap there only ever comes
//! from retention.
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, Statement,
};
use serde::{Deserialize, Serialize};

use super::Store;
use super::entities::{event_horizon, user, user_event};
use super::sql_text::SqlText;
use super::user_json::RowJson;
use crate::domain::device::Device;
use crate::domain::event::{Actor, Event, EventKind};
use crate::domain::moderation::Ban;
use crate::domain::time::Micros;
use crate::domain::user::{PrivacySettings, PushNotifications, User, UserFields};
use crate::error::{Error, Result};

/// Advisory lock key writers share while they append ("feed"); anything that appends events to
/// the feed on PostgreSQL must hold it (shared) until its transaction ends. `roster_feed_stamp`
/// (migration m0007) takes it for the appender.
pub const FEED_WRITERS_LOCK: i64 = migrations::FEED_WRITERS_LOCK;

/// One change to append.
pub(crate) struct NewEvent {
    pub kind: EventKind,
    pub user_id: String,
    /// The user after the change, as stored: JSON text, written straight from the user (a
    /// `serde_json::Value` tree in between would be built, cloned with the statement's values and
    /// dropped, for every event).
    pub snapshot: Option<String>,
    pub role: Option<String>,
}

/// A user as an event stores it: the row, plus the rows of its own (devices, blocks). The row's
/// fields stay at the top level, so snapshots written before devices and blocks existed read as
/// a user without any. Written as `SnapshotOf`.
#[derive(Deserialize)]
struct Snapshot {
    #[serde(flatten)]
    row: user::Model,
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(default)]
    blocked_user_ids: Vec<String>,
}

/// A `Snapshot` read in one pass from its JSON text straight into the domain's types: no
/// `serde_json::Value` tree, no `Model`, and no buffering for `flatten` on the way (together
/// they were a quarter of roster's CPU while a follower kept up with UpdateUsers). Every snapshot
/// roster writes fits it; one that does not is read through `Snapshot`, as leniently as before.
#[derive(Deserialize)]
struct SnapshotText {
    id: String,
    name: Option<String>,
    image: Option<String>,
    role: String,
    custom: serde_json::Map<String, serde_json::Value>,
    language: String,
    invisible: bool,
    teams: Vec<String>,
    teams_role: std::collections::BTreeMap<String, String>,
    privacy_settings: Option<PrivacySettings>,
    push_notifications: Option<PushNotifications>,
    created_at: i64,
    updated_at: i64,
    deactivated_at: Option<i64>,
    deleted_at: Option<i64>,
    last_active: Option<i64>,
    revoke_tokens_issued_before: Option<i64>,
    avg_response_time: Option<i32>,
    pruned_at: Option<i64>,
    #[serde(default)]
    banned_at: Option<i64>,
    #[serde(default)]
    ban_expires: Option<i64>,
    #[serde(default)]
    ban_reason: Option<String>,
    #[serde(default)]
    shadow_banned: bool,
    #[serde(default)]
    banned_by_id: Option<String>,
    #[serde(default)]
    devices: Vec<Device>,
    #[serde(default)]
    blocked_user_ids: Vec<String>,
}

impl From<SnapshotText> for User {
    fn from(s: SnapshotText) -> Self {
        User {
            fields: UserFields {
                id: s.id,
                name: s.name,
                image: s.image,
                role: s.role,
                custom: s.custom,
                language: s.language,
                invisible: s.invisible,
                teams: s.teams,
                teams_role: s.teams_role,
                privacy_settings: s.privacy_settings,
                push_notifications: s.push_notifications,
            },
            created_at: s.created_at,
            updated_at: s.updated_at,
            deactivated_at: s.deactivated_at,
            deleted_at: s.deleted_at,
            last_active: s.last_active,
            revoke_tokens_issued_before: s.revoke_tokens_issued_before,
            avg_response_time: s.avg_response_time,
            pruned_at: s.pruned_at,
            ban: s.banned_at.map(|banned_at| Ban {
                banned_at,
                expires: s.ban_expires,
                reason: s.ban_reason,
                shadow: s.shadow_banned,
                banned_by_id: s.banned_by_id,
            }),
            devices: s.devices,
            blocked_user_ids: s.blocked_user_ids,
        }
    }
}

/// The user a snapshot's JSON text holds.
fn read_snapshot(text: &str) -> serde_json::Result<User> {
    match serde_json::from_str::<SnapshotText>(text) {
        Ok(snapshot) => Ok(User::from(snapshot)),
        Err(_) => {
            let snapshot = serde_json::from_str::<Snapshot>(text)?;
            let mut user = User::from(snapshot.row);
            user.devices = snapshot.devices;
            user.blocked_user_ids = snapshot.blocked_user_ids;
            Ok(user)
        }
    }
}

/// A row of `user_events` as the feed reads it: the snapshot as JSON text (`CAST(snapshot AS
/// text)`), for `read_snapshot`.
#[derive(Debug, FromQueryResult)]
struct EventRow {
    sequence: i64,
    kind: String,
    user_id: String,
    caller: Option<String>,
    created_by_id: Option<String>,
    at: i64,
    snapshot: Option<String>,
    role: Option<String>,
}

/// A `Snapshot` as it is written: borrowed from the user, its row as `RowJson` (no `Model`, and
/// no copy of the user's JSON documents, is made for it).
#[derive(Serialize)]
struct SnapshotOf<'a> {
    #[serde(flatten)]
    row: RowJson<'a>,
    devices: &'a [Device],
    blocked_user_ids: &'a [String],
}

impl NewEvent {
    /// An event about `user`, which must carry its devices and blocks (see
    /// `user_rows::attach_relations`): the snapshot is the user as it is after the change.
    pub fn user(kind: EventKind, user: &User) -> Self {
        let snapshot = SnapshotOf {
            row: RowJson::of(user),
            devices: &user.devices,
            blocked_user_ids: &user.blocked_user_ids,
        };
        NewEvent {
            kind,
            user_id: user.fields.id.clone(),
            snapshot: serde_json::to_string(&snapshot).ok(),
            role: None,
        }
    }

    pub fn gone(kind: EventKind, user_id: &str) -> Self {
        NewEvent {
            kind,
            user_id: user_id.to_owned(),
            snapshot: None,
            role: None,
        }
    }

    pub fn role(kind: EventKind, role: &str) -> Self {
        NewEvent {
            kind,
            user_id: String::new(),
            snapshot: None,
            role: Some(role.to_owned()),
        }
    }
}

/// Appends events inside the caller's transaction, after the writes they describe. `at` is the
/// time of the change (the writer's `now`, see `WriteTx::now`).
///
/// On PostgreSQL writers of different users run side by side, and a writer that read the clock
/// earlier may draw later sequences. So the events' time and sequences are drawn together by
/// `roster_feed_stamp` (migration m0007): under a lock it holds for microseconds, it moves the
/// feed clock (a sequence, so what it sets is seen at once by the next writer) forward to `at`
/// if behind, stamps the events with it and draws their sequences. Event times therefore never
/// decrease along the feed, and no lock is held from the append to the commit, so commits still
/// share their WAL flushes.
pub(crate) async fn append(
    txn: &impl ConnectionTrait,
    actor: &Actor,
    at: Micros,
    events: Vec<NewEvent>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let count = events.len() as u64;
    let written = txn
        .execute_raw(insert_events(txn.get_database_backend(), actor, at, events))
        .await?
        .rows_affected();
    if written != count {
        // The statement writes one row per event it was given; anything else is a bug.
        return Err(Error::Internal(format!(
            "appended {written} of {count} change-feed events"
        )));
    }
    Ok(())
}

/// The newest time in the feed (0 when it is empty): where SQLite's writer slot starts its clock.
pub(crate) async fn newest_time(txn: &impl ConnectionTrait) -> Result<Micros> {
    let row = txn
        .query_one_raw(Statement::from_string(
            txn.get_database_backend(),
            "SELECT COALESCE(MAX(at), 0) AS at FROM user_events",
        ))
        .await?;
    Ok(row
        .and_then(|row| row.try_get::<i64>("", "at").ok())
        .unwrap_or(0))
}

/// The events' INSERT. The snapshots go as JSON text, which the database reads as `jsonb`.
///
/// On PostgreSQL the events go as one JSON array, read as `jsonb` (a statement of one parameter
/// per value costs more to plan, for each execution, than the array costs to read; see
/// `replace::replace_sql`), each joined to the sequence
/// and time `roster_feed_stamp` drew for it, so appending costs one round trip. The stamp also
/// takes the feed writers' shared lock, before it draws any sequence, which is all the
/// followers' gap rule needs.
fn insert_events(
    backend: DatabaseBackend,
    actor: &Actor,
    at: Micros,
    events: Vec<NewEvent>,
) -> Statement {
    const COLUMNS: &str = "kind, user_id, actor, caller, created_by_id, at, snapshot, role";
    if backend == DatabaseBackend::Postgres {
        let mut sql = SqlText::with_capacity(backend, 512, 6);
        sql.push("WITH stamp AS MATERIALIZED (SELECT * FROM roster_feed_stamp(");
        sql.bind(at);
        sql.push(", ");
        sql.bind_cast(events.len() as i32, "::int4");
        sql.push(")) INSERT INTO user_events (sequence, ");
        sql.push(COLUMNS);
        sql.push(") SELECT stamp.stamp_seq, v.kind, v.user_id, ");
        sql.bind_cast(actor.name(), "::text");
        sql.push(", ");
        sql.bind_cast(actor.caller.clone(), "::text");
        sql.push(", ");
        sql.bind_cast(actor.created_by_id.clone(), "::text");
        sql.push(
            ", stamp.stamp_at, v.snapshot, v.role \
             FROM jsonb_populate_recordset(NULL::user_events, ",
        );
        sql.bind_cast(events_json(&events), "::jsonb");
        sql.push(") WITH ORDINALITY AS v JOIN stamp ON stamp.stamp_ord = v.ordinality");
        return sql.into_statement();
    }
    let mut sql = SqlText::with_capacity(backend, 256, events.len() * 8);
    sql.push("INSERT INTO user_events (");
    sql.push(COLUMNS);
    sql.push(") VALUES ");
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.row([
            (e.kind.as_str().into(), ""),
            (e.user_id.into(), ""),
            (actor.name().into(), ""),
            (actor.caller.clone().into(), ""),
            (actor.created_by_id.clone().into(), ""),
            (at.into(), ""),
            (e.snapshot.into(), ""),
            (e.role.into(), ""),
        ]);
    }
    sql.into_statement()
}

/// The events as a JSON array of `{"kind", "user_id", "snapshot", "role"}` (the columns they
/// fill), each snapshot nested as the JSON text it already is.
fn events_json(events: &[NewEvent]) -> String {
    let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "null".into());
    let size: usize = events
        .iter()
        .map(|e| 64 + e.user_id.len() + e.snapshot.as_ref().map_or(0, String::len))
        .sum();
    let mut json = String::with_capacity(size + 2);
    json.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str("{\"kind\":");
        json.push_str(&text(e.kind.as_str()));
        json.push_str(",\"user_id\":");
        json.push_str(&text(&e.user_id));
        json.push_str(",\"snapshot\":");
        json.push_str(e.snapshot.as_deref().unwrap_or("null"));
        json.push_str(",\"role\":");
        match &e.role {
            Some(role) => json.push_str(&text(role)),
            None => json.push_str("null"),
        }
        json.push('}');
    }
    json.push(']');
    json
}

impl Store {
    /// Up to `limit` events after `after`, in sequence order.
    pub async fn read_events(&self, after: i64, limit: u64) -> Result<Vec<Event>> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
        use user_event::Column as C;
        let rows = user_event::Entity::find()
            .select_only()
            .columns([
                C::Sequence,
                C::Kind,
                C::UserId,
                C::Caller,
                C::CreatedById,
                C::At,
                C::Role,
            ])
            .expr_as(Expr::col(C::Snapshot).cast_as("text"), "snapshot")
            .filter(C::Sequence.gt(after))
            .order_by_asc(C::Sequence)
            .limit(limit)
            .into_model::<EventRow>()
            .all(self.conn())
            .await?;
        rows.into_iter().map(to_event).collect()
    }

    /// Waits until every transaction that was appending events when this was called has ended
    /// (PostgreSQL; SQLite commits in sequence order, so there is nothing to wait for).
    pub async fn wait_for_event_writers(&self) -> Result<()> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let txn = self.conn().begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [FEED_WRITERS_LOCK.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The highest sequence retention has removed (0 when nothing was purged).
    pub async fn events_purged_through(&self) -> Result<i64> {
        let horizon = event_horizon::Entity::find_by_id(1)
            .one(self.conn())
            .await?;
        Ok(horizon.map_or(0, |h| h.purged_through))
    }

    /// Removes events older than `before`, remembering how far the feed was purged.
    pub async fn purge_events(&self, before: Micros) -> Result<u64> {
        let tx = self.write().await?;
        let backend = self.backend();
        let mut newest = SqlText::new(backend);
        newest.push("SELECT MAX(sequence) AS s FROM user_events WHERE at < ");
        newest.bind(before);
        let newest_old = tx
            .txn
            .query_one_raw(newest.into_statement())
            .await?
            .and_then(|row| row.try_get::<Option<i64>>("", "s").ok().flatten());
        let Some(through) = newest_old else {
            return Ok(0);
        };
        use sea_orm::{ColumnTrait, QueryFilter};
        let deleted = user_event::Entity::delete_many()
            .filter(user_event::Column::Sequence.lte(through))
            .exec(&tx.txn)
            .await?;
        event_horizon::Entity::update(event_horizon::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(1),
            purged_through: Set(through),
        })
        .exec(&tx.txn)
        .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected)
    }
}

fn to_event(row: EventRow) -> Result<Event> {
    let kind = EventKind::parse(&row.kind)
        .ok_or_else(|| Error::Internal(format!("unknown event kind {}", row.kind)))?;
    let user = match row.snapshot {
        Some(text) => Some(
            read_snapshot(&text)
                .map_err(|e| Error::Internal(format!("event {} snapshot: {e}", row.sequence)))?,
        ),
        None => None,
    };
    Ok(Event {
        sequence: row.sequence,
        kind,
        user_id: row.user_id,
        actor: Actor::new(row.caller, row.created_by_id),
        at: row.at,
        user,
        role: row.role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::device::NewDevice;
    use crate::domain::user::UserFields;
    use sea_orm::Value;

    #[test]
    fn postgres_gets_the_events_as_one_json_array_with_their_snapshots_nested() {
        let events = vec![
            NewEvent {
                kind: EventKind::UserUpdated,
                user_id: "a\"b\\c".into(),
                snapshot: Some(r#"{"id":"a\"b\\c","custom":{"x":[1,2]}}"#.into()),
                role: None,
            },
            NewEvent::role(EventKind::RoleCreated, "mod"),
        ];
        let actor = Actor::new(Some("svc".into()), None);
        let pg = insert_events(DatabaseBackend::Postgres, &actor, 5, events);
        assert!(
            pg.sql.contains(
                "FROM jsonb_populate_recordset(NULL::user_events, $6::jsonb) WITH ORDINALITY"
            ),
            "{}",
            pg.sql
        );
        let values = pg.values.unwrap().0;
        assert_eq!(values.len(), 6);
        assert_eq!(values[1], Value::Int(Some(2)));
        let Value::String(Some(json)) = &values[5] else {
            panic!("{values:?}")
        };
        let rows: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            rows,
            serde_json::json!([
                {"kind": "user.updated", "user_id": "a\"b\\c",
                 "snapshot": {"id": "a\"b\\c", "custom": {"x": [1, 2]}}, "role": null},
                {"kind": "role.created", "user_id": "", "snapshot": null, "role": "mod"},
            ])
        );
    }

    fn event_row(snapshot: serde_json::Value) -> EventRow {
        EventRow {
            sequence: 1,
            kind: "user.updated".into(),
            user_id: "u1".into(),
            caller: None,
            created_by_id: None,
            at: 5,
            snapshot: Some(snapshot.to_string()),
            role: None,
        }
    }

    #[test]
    fn snapshots_carry_every_field_the_ban_devices_and_blocks() {
        let mut user = crate::store::user_json::tests::full_user();
        user.devices = vec![
            NewDevice {
                id: "d1".into(),
                push_provider: "apn".into(),
                ..Default::default()
            }
            .device(4)
            .unwrap(),
        ];
        user.blocked_user_ids = vec!["u2".into()];
        let snapshot = NewEvent::user(EventKind::UserUpdated, &user)
            .snapshot
            .unwrap();
        // Read in one pass, not through the lenient fallback.
        let read = serde_json::from_str::<SnapshotText>(&snapshot).map(User::from);
        assert_eq!(read.ok().as_ref(), Some(&user));
        let event = to_event(event_row(serde_json::from_str(&snapshot).unwrap())).unwrap();
        assert_eq!(event.user, Some(user));
    }

    #[test]
    fn a_snapshot_the_one_pass_reader_refuses_is_read_as_leniently_as_before() {
        let user = User::new(UserFields::with_id("u1"), 1);
        let mut odd = serde_json::to_value(user::Model::from(&user)).unwrap();
        // Not a shape roster writes: an unknown privacy setting and teams that are not a list.
        odd["privacy_settings"] =
            serde_json::json!({"typing_indicators": {"enabled": true}, "x": 1});
        odd["teams"] = serde_json::json!("red");
        assert!(serde_json::from_value::<SnapshotText>(odd.clone()).is_err());
        let event = to_event(event_row(odd)).unwrap();
        assert_eq!(event.user, Some(user));
    }

    #[test]
    fn snapshots_from_before_moderation_still_read() {
        let user = User::new(UserFields::with_id("u1"), 1);
        let mut old = serde_json::to_value(user::Model::from(&user)).unwrap();
        let row = old.as_object_mut().unwrap();
        for gone in [
            "banned_at",
            "ban_expires",
            "ban_reason",
            "shadow_banned",
            "banned_by_id",
        ] {
            row.remove(gone);
        }
        let event = to_event(event_row(old)).unwrap();
        assert_eq!(event.user, Some(user));
    }
}
