//! Bad input, generated: filters, dotted partial-update paths, custom JSON, ids and option
//! combinations thrown at a real server by `proptest`.
//!
//! Every property holds for every generated case:
//! - the server answers (it never panics, and it still serves a health check and a read after);
//! - a rejection is INVALID_ARGUMENT carrying a `google.rpc.BadRequest` whose violations all name
//!   a field (where the contract expects a different refusal, e.g. NOT_FOUND for an unknown user,
//!   the property says so);
//! - a rejected call wrote nothing: the users are as they were, and the change feed's next event
//!   is the probe write made right after the call (any write appends an event in its own
//!   transaction, so a stray write would show up before the probe);
//! - inputs the contract calls valid succeed.
//!
//! Cases per property: `PROPTEST_CASES` when set, else 64, or 1024 with `ROSTER_FAULT_LONG=1`.
//! Failures are not persisted to files (the suite must not write into the source tree); a
//! failing case is printed, shrunk, with its inputs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use roster::pb::event_service_client::EventServiceClient;
use roster::pb::{
    DeactivateUserRequest, DeleteUsersRequest, GetUserRequest, QueryUsersRequest,
    ReactivateUserRequest, RestoreUsersRequest, SortField, UpdateUserPartialRequest,
    UpdateUsersRequest, User, UserRequest, WatchUserEventsRequest, WatchUserEventsResponse,
};
use serde_json::{Value as Json, json};
use tonic::{Code, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::support::*;

/// How long one call, or the wait for one feed event, may take.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Users every fixture seeds; the properties read and probe them.
const SEEDED: [&str; 3] = ["alice", "bob", "carol"];
/// The user the probe writes to, so that "nothing else was written" is observable.
const PROBE: &str = "probe";

fn cases() -> u32 {
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var("ROSTER_FAULT_LONG").is_ok_and(|v| v == "1") {
        1024
    } else {
        64
    }
}

/// Stack for generating and shrinking cases: the test thread's default is too small for them.
const GENERATOR_STACK: usize = 64 << 20;

/// Runs `property` against one server for every generated case.
fn check<S: Strategy>(
    strategy: S,
    property: impl AsyncFn(&Fixture, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fixture = runtime.block_on(Fixture::start());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        // Each shrink step is a round trip to the server: keep the search bounded.
        max_shrink_iters: 256,
        ..Config::default()
    });
    // Building a value tree for a deeply recursive strategy recurses once per level and, in a
    // debug build, overflowed the test thread's 2 MiB stack in about one run in twenty.
    let result = stacker::grow(GENERATOR_STACK, || {
        runner.run(&strategy, |input| {
            runtime.block_on(async {
                tokio::time::timeout(4 * CALL_DEADLINE, property(&fixture, input))
                    .await
                    .map_err(|_| TestCaseError::fail("the case did not finish in time"))?
            })
        })
    });
    runtime.block_on(fixture.stop());
    drop(runtime);
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => panic!("{why}\nminimal failing input: {input:#?}"),
        Err(TestError::Abort(why)) => panic!("aborted: {why}"),
    }
}

/// A server with seeded users and a change-feed subscription that the probe reads.
struct Fixture {
    srv: Server,
    feed: tokio::sync::Mutex<Option<Streaming<WatchUserEventsResponse>>>,
    probes: RefCell<i64>,
}

impl Fixture {
    async fn start() -> Self {
        let srv = Launch::new().start().await;
        srv.upsert_ok(SEEDED.iter().map(|id| seed(id))).await;
        srv.upsert_ok([user(PROBE)]).await;
        let feed = EventServiceClient::new(srv.channel())
            .watch_user_events(WatchUserEventsRequest::default())
            .await
            .expect("WatchUserEvents")
            .into_inner();
        let fixture = Fixture {
            srv,
            feed: tokio::sync::Mutex::new(Some(feed)),
            probes: RefCell::new(0),
        };
        fixture
            .resync()
            .await
            .expect("the feed reaches the first probe");
        fixture
    }

    async fn stop(self) {
        drop(self.feed.into_inner());
        if let Err(e) = self.srv.stop().await {
            panic!("roster::run ended with an error: {e}");
        }
    }

    /// Writes the next probe value; gives the value.
    async fn probe_write(&self) -> Result<i64, TestCaseError> {
        let n = {
            let mut probes = self.probes.borrow_mut();
            *probes += 1;
            *probes
        };
        let update = partial(PROBE, json!({ "probe": n }), &[]);
        call(self.srv.update_partial([update]))
            .await?
            .map_err(|s| TestCaseError::fail(format!("the probe write failed: {s:?}")))?;
        Ok(n)
    }

    /// The next event of the feed.
    async fn next_event(&self) -> Result<roster::pb::UserChangeEvent, TestCaseError> {
        let mut feed = self.feed.lock().await;
        let stream = feed
            .as_mut()
            .ok_or_else(|| TestCaseError::fail("the feed is closed"))?;
        loop {
            let message = tokio::time::timeout(CALL_DEADLINE, stream.message())
                .await
                .map_err(|_| TestCaseError::fail("no feed event in time"))?
                .map_err(|s| TestCaseError::fail(format!("feed stream failed: {s:?}")))?
                .ok_or_else(|| TestCaseError::fail("the feed stream ended"))?;
            if let Some(event) = message.event {
                return Ok(event);
            }
        }
    }

    fn is_probe(event: &roster::pb::UserChangeEvent, n: i64) -> bool {
        event.user_id == PROBE
            && event
                .user
                .as_ref()
                .is_some_and(|u| custom_of(u)["probe"] == json!(n))
    }

    /// Skips the feed past everything written so far (after an accepted write).
    async fn resync(&self) -> Result<(), TestCaseError> {
        let n = self.probe_write().await?;
        while !Self::is_probe(&self.next_event().await?, n) {}
        Ok(())
    }

    /// The probe write is the next event: nothing was written since the last probe.
    async fn assert_no_write_since_last_probe(&self, what: &str) -> Result<(), TestCaseError> {
        let n = self.probe_write().await?;
        let event = self.next_event().await?;
        prop_assert!(
            Self::is_probe(&event, n),
            "{what} was rejected but wrote: the feed has {} for {:?} before the probe",
            event.kind,
            event.user_id
        );
        Ok(())
    }

    /// Every user as `QueryUsers` lists it, plus each seeded user as `GetUser` sees it (deleted
    /// included), without the probe user.
    async fn snapshot(&self) -> Result<Vec<User>, TestCaseError> {
        let mut users: Vec<User> = call(self.srv.query(QueryUsersRequest {
            limit: 100,
            include_deactivated_users: true,
            ..QueryUsersRequest::default()
        }))
        .await?
        .map_err(|s| TestCaseError::fail(format!("QueryUsers listing everything: {s:?}")))?
        .users;
        for id in SEEDED {
            let request = GetUserRequest {
                id: id.to_owned(),
                include_deleted: true,
            };
            let mut users_client = self.srv.users();
            if let Ok(response) = call(users_client.get_user(request)).await? {
                users.extend(response.into_inner().user);
            }
        }
        users.retain(|u| u.id != PROBE);
        Ok(users)
    }

    /// Health says SERVING and a seeded user reads back.
    async fn assert_serving(&self) -> Result<(), TestCaseError> {
        let mut health = HealthClient::new(self.srv.channel());
        let status = call(health.check(HealthCheckRequest {
            service: String::new(),
        }))
        .await?
        .map_err(|s| TestCaseError::fail(format!("health check failed: {s:?}")))?
        .into_inner()
        .status;
        prop_assert_eq!(status, ServingStatus::Serving as i32);
        call(self.srv.get(SEEDED[0]))
            .await?
            .map_err(|s| TestCaseError::fail(format!("GetUser after the case: {s:?}")))?;
        Ok(())
    }

    /// Runs a call that may be rejected. Gives `Some(response)` when it succeeded; when it was
    /// rejected, checks the rejection with `allowed` and that nothing was written.
    async fn attempt<T>(
        &self,
        what: &str,
        allowed: &[Code],
        call_it: impl Future<Output = Result<T, Status>>,
    ) -> Result<Option<T>, TestCaseError> {
        let before = self.snapshot().await?;
        let outcome = call(call_it).await?;
        let result = match outcome {
            Ok(response) => {
                self.resync().await?;
                Some(response)
            }
            Err(status) => {
                if status.code() == Code::InvalidArgument {
                    assert_precise_rejection(&status, what)?;
                } else {
                    prop_assert!(
                        allowed.contains(&status.code()),
                        "{what}: {:?} is not a refusal this call may give: {status:?}",
                        status.code()
                    );
                }
                self.assert_no_write_since_last_probe(what).await?;
                let after = self.snapshot().await?;
                prop_assert!(before == after, "{what} was rejected but changed users");
                None
            }
        };
        self.assert_serving().await?;
        Ok(result)
    }
}

/// A call that must answer within the deadline (a hang is a failure, not a stuck suite).
async fn call<T>(f: impl Future<Output = T>) -> Result<T, TestCaseError> {
    tokio::time::timeout(CALL_DEADLINE, f)
        .await
        .map_err(|_| TestCaseError::fail("the call did not answer in time"))
}

/// INVALID_ARGUMENT with a BadRequest whose violations each name a field.
fn assert_precise_rejection(status: &Status, what: &str) -> Result<(), TestCaseError> {
    let bad_request = status.get_details_bad_request().ok_or_else(|| {
        TestCaseError::fail(format!(
            "{what}: INVALID_ARGUMENT without google.rpc.BadRequest: {status:?}"
        ))
    })?;
    prop_assert!(
        !bad_request.field_violations.is_empty(),
        "{what}: BadRequest without violations: {status:?}"
    );
    for violation in &bad_request.field_violations {
        prop_assert!(
            !violation.field.is_empty() && !violation.description.is_empty(),
            "{what}: a violation without a field or a description: {status:?}"
        );
    }
    Ok(())
}

/// The rejection must be INVALID_ARGUMENT (not just any allowed refusal).
fn must_be_invalid<T: std::fmt::Debug>(
    what: &str,
    outcome: &Option<T>,
) -> Result<(), TestCaseError> {
    prop_assert!(outcome.is_none(), "{what}: invalid input was accepted");
    Ok(())
}

fn seed(id: &str) -> UserRequest {
    user(id)
        .with_name(&format!("{id} seed"))
        .with_teams(&["red", "blue"])
        .with_custom(json!({"score": 5, "address": {"city": "Oslo"}, "tags": ["x"]}))
}

// ---------------------------------------------------------------------------------------------
// Building protobuf values (NaN and infinities included, which JSON cannot hold)

fn s(text: impl Into<String>) -> Value {
    kind(Kind::StringValue(text.into()))
}

fn n(number: f64) -> Value {
    kind(Kind::NumberValue(number))
}

fn b(flag: bool) -> Value {
    kind(Kind::BoolValue(flag))
}

fn null() -> Value {
    kind(Kind::NullValue(0))
}

fn list(values: Vec<Value>) -> Value {
    kind(Kind::ListValue(ListValue { values }))
}

fn obj(fields: Vec<(String, Value)>) -> Value {
    kind(Kind::StructValue(Struct {
        fields: fields.into_iter().collect(),
    }))
}

fn kind(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

fn as_struct(value: Value) -> Struct {
    match value.kind {
        Some(Kind::StructValue(s)) => s,
        other => Struct {
            fields: BTreeMap::from([("value".to_owned(), Value { kind: other })]),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Generators shared by the properties

/// Numbers a double can hold, the awkward ones over-represented.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (-1000i64..1000i64).prop_map(|i| i as f64),
        2 => any::<i64>().prop_map(|i| i as f64),
        2 => select(vec![
            0.0,
            -0.0,
            1e308,
            -1e308,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            9_007_199_254_740_992.0,
            9_007_199_254_740_993.0,
            1.5,
            -2.25,
            1e-7,
        ]),
        2 => any::<f64>(),
    ]
}

/// A double, finite.
fn finite_number() -> impl Strategy<Value = f64> {
    number().prop_filter("finite", |x| x.is_finite())
}

/// Text without NUL: unicode (right-to-left marks, emoji, combining marks), quotes, SQL and
/// LIKE metacharacters.
fn clean_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        2 => select(vec![
            "", " ", "'", "\"", "\\", "%", "_", "' OR 1=1 --", "🦀", "\u{202e}abc", "e\u{301}",
            "ß", "İ", "\u{feff}", "\u{2028}", "null", "2024-01-01T00:00:00Z",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z]{0,8}",
    ]
}

/// Text that may hold NUL or control characters.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => clean_text(),
        1 => (clean_text(), clean_text()).prop_map(|(a, b)| format!("{a}\0{b}")),
        1 => "[\\x00-\\x1f]{1,4}",
    ]
}

/// A scalar protobuf value, any kind.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(null()),
        1 => any::<bool>().prop_map(b),
        3 => number().prop_map(n),
        3 => any_text().prop_map(s),
        1 => select(vec![
            "2024-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "1970-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59.999999Z",
            "0000-01-01T00:00:00Z",
            "yesterday",
        ])
        .prop_map(s),
    ]
}

/// Arbitrary JSON-ish values (objects, lists), bounded.
fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(list),
            prop::collection::vec((any_text(), inner), 0..4).prop_map(obj),
        ]
    })
}

/// A chain of `depth` nested objects around a scalar.
fn nested(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, _| obj(vec![("d".to_owned(), inner)]))
}

// ---------------------------------------------------------------------------------------------
// 1. Filters

/// Field names a filter may mention, and many it may not.
fn filter_field() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(vec![
            "id", "name", "image", "role", "language", "invisible", "created_at", "updated_at",
            "deactivated_at", "last_active", "teams", "score", "custom.score", "address.city",
            "custom.address.city", "tags", "custom", "custom.", "deleted_at", "teams_role",
            "privacy_settings", "avg_response_time", "$where", "$expr", "", ".", "a..b", ".a",
            "a.", "a\"b", "a\0b", "a\nb", "' OR 1=1 --", "ünï🦀", "custom.$gt", "$and", "$or",
        ])
        .prop_map(str::to_owned),
        2 => "[a-z]{1,6}(\\.[a-z]{1,6}){0,3}",
        2 => any_text(),
        1 => (14usize..20).prop_map(|segments| vec!["s"; segments].join(".")),
        1 => (1020usize..1030).prop_map(|len| "k".repeat(len)),
    ]
}

fn filter_operator() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(vec![
            "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
            "$autocomplete", "$contains",
        ])
        .prop_map(str::to_owned),
        2 => select(vec!["$regex", "$where", "$size", "$EQ", "eq", "", "$", "$and", "$or"])
            .prop_map(str::to_owned),
        1 => any_text(),
    ]
}

/// What a field is compared with: a scalar, an operator object, or something malformed.
fn filter_condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        5 => prop::collection::vec(
            (
                filter_operator(),
                prop_oneof![
                    4 => scalar(),
                    2 => prop::collection::vec(scalar(), 0..5).prop_map(list),
                    1 => json_value(),
                ],
            ),
            0..3,
        )
        .prop_map(obj),
        1 => json_value(),
    ]
}

/// Filters: generated field conditions combined by logical operators (real and made up), nested
/// deeper than the limit at times.
fn filter() -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec((filter_field(), filter_condition()), 0..3).prop_map(obj);
    leaf.prop_recursive(12, 48, 3, |inner| {
        prop_oneof![
            3 => (
                select(vec!["$and", "$or", "$nor"]),
                prop::collection::vec(inner.clone(), 0..3),
            )
                .prop_map(|(op, items)| obj(vec![(op.to_owned(), list(items))])),
            1 => (select(vec!["$and", "$or", "$not", "$xor"]), inner.clone())
                .prop_map(|(op, item)| obj(vec![(op.to_owned(), item)])),
            1 => (inner.clone(), filter_field(), filter_condition()).prop_map(
                |(inner, field, condition)| match inner.kind {
                    Some(Kind::StructValue(mut s)) => {
                        s.fields.insert(field, condition);
                        kind(Kind::StructValue(s))
                    }
                    other => Value { kind: other },
                }
            ),
        ]
    })
}

/// A custom key path that names no built-in field: `custom.` and 1 to 4 clean segments.
fn custom_key() -> impl Strategy<Value = String> {
    let segment = "\\PC{1,8}".prop_filter("a plain segment", |seg: &String| {
        !seg.contains('.') && !seg.contains('"')
    });
    prop::collection::vec(segment, 1..=4)
        .prop_map(|segments| format!("custom.{}", segments.join(".")))
}

/// One condition the contract accepts.
fn valid_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (clean_text()).prop_map(|t| obj(vec![(
            "name".into(),
            obj(vec![("$autocomplete".into(), s(t))])
        )])),
        (clean_text()).prop_map(|t| obj(vec![(
            "id".into(),
            obj(vec![("$autocomplete".into(), s(t))])
        )])),
        prop::collection::vec(clean_text(), 0..5).prop_map(|ids| obj(vec![(
            "id".into(),
            obj(vec![("$in".into(), list(ids.into_iter().map(s).collect()))])
        )])),
        (clean_text()).prop_map(|t| obj(vec![(
            "teams".into(),
            obj(vec![("$contains".into(), s(t))])
        )])),
        (custom_key(), finite_number(), finite_number()).prop_map(|(key, lo, hi)| obj(vec![(
            key,
            obj(vec![("$gt".into(), n(lo)), ("$lte".into(), n(hi))])
        )])),
        (
            custom_key(),
            prop_oneof![
                finite_number().prop_map(n),
                clean_text().prop_map(s),
                any::<bool>().prop_map(b),
                Just(null())
            ]
        )
            .prop_map(|(key, value)| obj(vec![(key, value)])),
        (custom_key(), any::<bool>())
            .prop_map(|(key, exists)| obj(vec![(key, obj(vec![("$exists".into(), b(exists))]))])),
        (
            custom_key(),
            prop::collection::vec(
                prop_oneof![finite_number().prop_map(n), clean_text().prop_map(s)],
                0..6
            )
        )
            .prop_map(|(key, values)| obj(vec![(key, obj(vec![("$nin".into(), list(values))]))])),
        (
            select(vec![
                "created_at",
                "updated_at",
                "last_active",
                "deactivated_at"
            ]),
            select(vec!["$gt", "$gte", "$lt", "$lte", "$ne", "$eq"]),
            select(vec![
                "2024-01-01T00:00:00Z",
                "1970-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59.999999Z",
                "2026-11-29T08:00:00.5-03:00"
            ])
        )
            .prop_map(|(field, op, at)| obj(vec![(field.into(), obj(vec![(op.into(), s(at))]))])),
        any::<bool>().prop_map(|v| obj(vec![("invisible".into(), b(v))])),
        Just(obj(vec![("deactivated_at".into(), null())])),
        (select(vec!["role", "language", "image"]), clean_text())
            .prop_map(|(field, t)| obj(vec![(field.into(), obj(vec![("$ne".into(), s(t))]))])),
    ]
}

/// Filters the contract accepts: valid conditions combined up to the nesting limit.
fn valid_filter() -> impl Strategy<Value = Value> {
    valid_leaf().prop_recursive(4, 24, 3, |inner| {
        (
            select(vec!["$and", "$or", "$nor"]),
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(op, items)| obj(vec![(op.to_owned(), list(items))]))
    })
}

fn query(filter: Value) -> QueryUsersRequest {
    QueryUsersRequest {
        filter: Some(as_struct(filter)),
        limit: 100,
        include_deactivated_users: true,
        ..QueryUsersRequest::default()
    }
}

#[test]
fn generated_filters_are_answered_or_refused_precisely() {
    check(filter(), async |fx: &Fixture, filter: Value| {
        fx.attempt("QueryUsers", &[], fx.srv.query(query(filter)))
            .await?;
        Ok(())
    });
}

#[test]
fn valid_filters_succeed() {
    check(valid_filter(), async |fx: &Fixture, filter: Value| {
        let result = call(fx.srv.query(query(filter))).await?;
        prop_assert!(result.is_ok(), "a valid filter was refused: {result:?}");
        fx.assert_serving().await
    });
}

/// `depth` levels of `$and`/`$or`/`$nor` around a condition: refused past the limit of 10.
#[test]
fn nesting_beyond_the_limit_is_refused() {
    let strategy = (
        1usize..=40,
        prop::collection::vec(select(vec!["$and", "$or", "$nor"]), 40),
    );
    check(
        strategy,
        async |fx: &Fixture, (levels, ops): (usize, Vec<&'static str>)| {
            let filter = ops
                .iter()
                .take(levels - 1)
                .fold(obj(vec![("id".into(), s("alice"))]), |inner, op| {
                    obj(vec![((*op).to_owned(), list(vec![inner]))])
                });
            let outcome = fx
                .attempt("QueryUsers", &[], fx.srv.query(query(filter)))
                .await?;
            if levels <= 10 {
                prop_assert!(outcome.is_some(), "{levels} levels are within the limit");
            } else {
                must_be_invalid("a filter nested too deep", &outcome)?;
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Dotted paths of partial updates

/// Keys for `set` and `unset`: caller fields, server fields, custom paths (sharing segments so
/// that conflicts happen), malformed and very long paths.
fn partial_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(select(vec!["a", "b", "c", "address", "score", "tags"]), 1..4)
            .prop_map(|segments| segments.join(".")),
        3 => select(vec![
            "name", "image", "role", "language", "invisible", "teams", "teams_role",
            "privacy_settings", "push_notifications", "revoke_tokens_issued_before", "custom",
            "custom.a", "custom.a.b", "address.city", "id", "created_at", "updated_at",
            "deleted_at", "deactivated_at", "banned", "shadow_banned", "devices", "online",
            "last_active", "blocked_user_ids", "avg_response_time", "name.first", "role.x",
            "privacy_settings.read_receipts", "privacy_settings.read_receipts.enabled",
            "teams_role.red", "push_notifications.disabled", "", ".", "..", "a..b", ".a", "a.",
            "custom.", "$set", "ünï🦀.🦀",
        ])
        .prop_map(str::to_owned),
        2 => any_text(),
        1 => (20usize..60).prop_map(|segments| vec!["p"; segments].join(".")),
        1 => (5000usize..7000).prop_map(|len| "k".repeat(len)),
    ]
}

/// Values for `set`: anything, fit for the field or not.
fn partial_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        5 => json_value(),
        1 => (30usize..45, scalar()).prop_map(|(depth, leaf)| nested(depth, leaf)),
        1 => (5000usize..7000).prop_map(|len| s("v".repeat(len))),
        1 => prop::collection::vec(any_text(), 0..4)
            .prop_map(|teams| list(teams.into_iter().map(s).collect())),
        1 => select(vec!["user", "admin", "channel_member", "nope", ""]).prop_map(s),
        1 => any::<bool>().prop_map(|on| obj(vec![(
            "read_receipts".into(),
            obj(vec![("enabled".into(), b(on))])
        )])),
    ]
}

#[derive(Debug, Clone)]
struct PartialCase {
    target: &'static str,
    set: Vec<(String, Value)>,
    unset: Vec<String>,
}

fn partial_case() -> impl Strategy<Value = PartialCase> {
    (
        select(SEEDED.to_vec()),
        prop::collection::vec((partial_key(), partial_value()), 0..4),
        prop::collection::vec(partial_key(), 0..3),
    )
        .prop_map(|(target, set, unset)| PartialCase { target, set, unset })
}

#[test]
fn generated_partial_updates_apply_or_change_nothing() {
    check(partial_case(), async |fx: &Fixture, case: PartialCase| {
        let request = UpdateUserPartialRequest {
            id: case.target.to_owned(),
            set: Some(Struct {
                fields: case.set.into_iter().collect(),
            }),
            unset: case.unset,
        };
        let outcome = fx
            .attempt("UpdateUsersPartial", &[], fx.srv.update_partial([request]))
            .await?;
        if let Some(users) = outcome {
            // Read-your-writes: what the call returned is what is stored.
            let returned = users.get(case.target).cloned();
            let stored = call(fx.srv.get(case.target)).await?.ok();
            prop_assert_eq!(returned, stored);
            // Back to the seed, so cases do not pile up custom data towards the size limit.
            call(fx.srv.upsert([seed(case.target)]))
                .await?
                .map_err(|s| TestCaseError::fail(format!("reseeding: {s:?}")))?;
            fx.resync().await?;
        }
        Ok(())
    });
}

/// Values to set by path: `(first segment, further segments) -> value`.
type PathSets = BTreeMap<(&'static str, Vec<String>), Json>;

/// Fresh custom paths (first segments the seed does not use, never one inside another) with
/// valid values: always applied, and readable at their path.
#[test]
fn valid_dotted_paths_are_applied() {
    let path = (
        select(vec!["k0", "k1", "k2", "k3", "k4", "k5"]),
        prop::collection::vec(
            "\\PC{1,6}".prop_filter("plain", |seg: &String| !seg.contains('.')),
            0..3,
        ),
    );
    let value = prop_oneof![
        finite_number().prop_map(|x| json!(x)),
        clean_text().prop_map(|t| json!(t)),
        any::<bool>().prop_map(|v| json!(v)),
        Just(json!(null)),
        Just(json!({"x": [1, "two", null]})),
    ];
    let strategy = (
        select(SEEDED.to_vec()),
        prop::collection::btree_map(path.prop_map(|(first, rest)| (first, rest)), value, 1..4),
        any::<bool>(),
    );
    check(
        strategy,
        async |fx: &Fixture, (target, sets, unset_seeded): (&'static str, PathSets, bool)| {
            // One path per first segment, so no path contains another.
            let mut by_first: BTreeMap<&str, (Vec<String>, Json)> = BTreeMap::new();
            for ((first, rest), value) in sets {
                by_first.entry(first).or_insert((rest, value));
            }
            let mut set = serde_json::Map::new();
            for (first, (rest, value)) in &by_first {
                let key = std::iter::once((*first).to_owned())
                    .chain(rest.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(".");
                set.insert(key, value.clone());
            }
            let unset: &[&str] = if unset_seeded {
                &["address.city", "name"]
            } else {
                &[]
            };
            let result = call(
                fx.srv
                    .update_partial([partial(target, Json::Object(set), unset)]),
            )
            .await?;
            let users = result
                .map_err(|s| TestCaseError::fail(format!("valid partial update refused: {s:?}")))?;
            let updated = users
                .get(target)
                .ok_or_else(|| TestCaseError::fail("the user is missing from the response"))?;
            let custom = custom_of(updated);
            for (first, (rest, value)) in &by_first {
                let mut at = &custom[*first];
                for segment in rest {
                    at = &at[segment.as_str()];
                }
                prop_assert_eq!(at, &normalized(value), "value at {} {:?}", first, rest);
            }
            if unset_seeded {
                prop_assert_eq!(&custom["address"], &json!({}));
                prop_assert_eq!(&updated.name, &None);
            } else {
                prop_assert_eq!(&custom["address"], &json!({"city": "Oslo"}));
            }
            prop_assert_eq!(&custom["score"], &json!(5));
            call(fx.srv.upsert([seed(target)]))
                .await?
                .map_err(|s| TestCaseError::fail(format!("reseeding: {s:?}")))?;
            fx.resync().await?;
            fx.assert_serving().await
        },
    );
}

/// JSON as it comes back: whole numbers that a double holds exactly are integers.
fn normalized(value: &Json) -> Json {
    json_from_value(&value_from(value.clone()))
}

// ---------------------------------------------------------------------------------------------
// 3. Custom JSON, ids and the other caller fields of UpdateUsers

/// An id, with whether the contract accepts it (1 to 255 of `a-z A-Z 0-9 @ _ -`).
fn id() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        4 => "[a-zA-Z0-9@_-]{1,40}".prop_map(|id| (id, true)),
        1 => Just(("x".repeat(255), true)),
        1 => Just((String::new(), false)),
        1 => (256usize..600).prop_map(|len| ("y".repeat(len), false)),
        2 => ("[a-zA-Z0-9@_-]{0,10}", select(vec![" ", ".", "/", "é", "🦀", "\0", "\n", "'", "\"", ":", "+", "%", "\u{202e}", "＠"]), "[a-zA-Z0-9@_-]{0,10}")
            .prop_map(|(a, bad, b)| (format!("{a}{bad}{b}"), false)),
    ]
}

/// Custom data, with whether it is acceptable: at most 32 levels deep, finite numbers, no NUL,
/// no `.` in a key at any depth, at most 5 KiB serialized (valid cases stay far below, invalid
/// ones far above).
fn custom_data() -> impl Strategy<Value = (Value, bool)> {
    let clean_scalar = prop_oneof![
        Just(null()),
        any::<bool>().prop_map(b),
        finite_number().prop_map(n),
        clean_text().prop_map(s),
    ];
    let clean = clean_scalar.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(list),
            prop::collection::vec(("[^.\\p{C}]{0,8}", inner), 0..3).prop_map(obj),
        ]
    });
    let clean_object =
        prop::collection::vec(("[^.\\p{C}]{0,8}", clean.clone()), 0..4).prop_map(obj);
    prop_oneof![
        4 => clean_object.clone().prop_map(|v| (v, true)),
        2 => (0usize..=45).prop_map(|depth| (obj(vec![("deep".into(), nested(depth, n(1.0)))]), depth < 32)),
        1 => select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
            .prop_map(|x| (obj(vec![("x".into(), list(vec![n(1.0), n(x)]))]), false)),
        1 => (clean_text(), clean_text()).prop_map(|(a, b)| (obj(vec![("t".into(), s(format!("{a}\0{b}")))]), false)),
        1 => (clean_text(), clean_text()).prop_map(|(a, b)| (obj(vec![(format!("{a}\0{b}"), n(1.0))]), false)),
        1 => ("[^.\\p{C}]{0,4}", "[^.\\p{C}]{0,4}", clean, 0usize..3).prop_map(|(a, b, value, depth)| {
            (obj(vec![("in".into(), nested(depth, obj(vec![(format!("{a}.{b}"), value)])))]), false)
        }),
        1 => (6000usize..9000).prop_map(|len| (obj(vec![("big".into(), s("z".repeat(len)))]), false)),
        1 => (0usize..3).prop_map(|_| (obj(vec![("huge".into(), list(vec![n(1e308), n(-1e308), n(5e-324), n(9_007_199_254_740_993.0), n(f64::MAX)]))]), true)),
    ]
}

#[derive(Debug, Clone)]
struct UpsertCase {
    key: String,
    id: String,
    id_ok: bool,
    name: Option<String>,
    role: Option<&'static str>,
    language: String,
    teams: Vec<String>,
    teams_role: BTreeMap<String, &'static str>,
    custom: Value,
    custom_ok: bool,
}

impl UpsertCase {
    /// Whether the contract accepts the request, field by field.
    fn valid(&self) -> bool {
        let roles = ["user", "admin", "guest", "anonymous"];
        let known =
            |r: &str| roles.contains(&r) || r == "channel_member" || r == "channel_moderator";
        let team_ok = |t: &String| !t.is_empty() && t.chars().count() <= 255 && !t.contains('\0');
        let distinct: BTreeSet<&String> = self.teams.iter().collect();
        self.id_ok
            && self.key == self.id
            && self.custom_ok
            && !self.name.as_deref().is_some_and(|n| n.contains('\0'))
            && self.role.is_none_or(|r| roles.contains(&r))
            && self.language.chars().count() <= 16
            && !self.language.contains('\0')
            && self.teams.iter().all(team_ok)
            && distinct.len() == self.teams.len()
            && self
                .teams_role
                .iter()
                .all(|(team, role)| self.teams.contains(team) && known(role))
    }

    fn request(&self) -> UserRequest {
        UserRequest {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role.map(str::to_owned),
            language: self.language.clone(),
            teams: self.teams.clone(),
            teams_role: self
                .teams_role
                .iter()
                .map(|(team, role)| (team.clone(), (*role).to_owned()))
                .collect(),
            custom: Some(as_struct(self.custom.clone())),
            ..UserRequest::default()
        }
    }
}

fn upsert_case() -> impl Strategy<Value = UpsertCase> {
    let team = prop_oneof![
        4 => select(vec!["red", "blue", "green"]).prop_map(str::to_owned),
        1 => any_text(),
    ];
    (
        id(),
        prop_oneof![8 => Just(None), 1 => Just(Some("other-key".to_owned()))],
        prop::option::of(any_text()),
        prop::option::of(select(vec![
            "user",
            "admin",
            "guest",
            "channel_member",
            "nope",
            "",
        ])),
        prop_oneof![3 => "[a-z]{0,5}", 1 => any_text()],
        prop::collection::vec(team.clone(), 0..4),
        prop::collection::vec(
            (
                team,
                select(vec!["admin", "user", "channel_moderator", "nope"]),
            ),
            0..2,
        ),
        custom_data(),
    )
        .prop_map(
            |((id, id_ok), key, name, role, language, teams, teams_role, (custom, custom_ok))| {
                UpsertCase {
                    key: key.unwrap_or_else(|| id.clone()),
                    id,
                    id_ok,
                    name,
                    role,
                    language,
                    teams,
                    teams_role: teams_role.into_iter().collect(),
                    custom,
                    custom_ok,
                }
            },
        )
}

#[test]
fn generated_users_are_stored_exactly_or_refused() {
    check(upsert_case(), async |fx: &Fixture, case: UpsertCase| {
        let request = UpdateUsersRequest {
            users: [(case.key.clone(), case.request())].into(),
        };
        let mut client = fx.srv.users();
        let outcome = fx
            .attempt("UpdateUsers", &[], client.update_users(request))
            .await?;
        match outcome {
            Some(response) => {
                prop_assert!(case.valid(), "an invalid user was accepted");
                let users = response.into_inner().users;
                let returned = users.get(&case.id).cloned();
                let stored = call(fx.srv.get(&case.id)).await?.ok();
                prop_assert_eq!(&returned, &stored, "read-your-writes");
                let stored = stored.ok_or_else(|| TestCaseError::fail("the user is not stored"))?;
                let sent = json_from_struct(&as_struct(case.custom.clone()));
                prop_assert_eq!(custom_of(&stored), normalized(&sent), "custom round-trips");
                prop_assert_eq!(&stored.name, &case.name);
                prop_assert_eq!(&stored.teams, &case.teams);
                prop_assert_eq!(&stored.language, &case.language);
                if !SEEDED.contains(&case.id.as_str()) && case.id != PROBE {
                    // Leave nothing behind for the next case (a hard delete frees the id).
                    remove(fx, &case.id).await?;
                } else {
                    call(fx.srv.upsert([seed(&case.id)]))
                        .await?
                        .map_err(|s| TestCaseError::fail(format!("reseeding: {s:?}")))?;
                }
                fx.resync().await?;
            }
            None => prop_assert!(!case.valid(), "a valid user was refused"),
        }
        Ok(())
    });
}

/// Hard-deletes a user and waits for its task.
async fn remove(fx: &Fixture, id: &str) -> Result<(), TestCaseError> {
    let mut client = fx.srv.users();
    let task = call(client.delete_users(DeleteUsersRequest {
        user_ids: vec![id.to_owned()],
        user: "hard".into(),
        messages: "hard".into(),
        conversations: "hard".into(),
        ..DeleteUsersRequest::default()
    }))
    .await?
    .map_err(|s| TestCaseError::fail(format!("hard delete of {id}: {s:?}")))?
    .into_inner()
    .task_id;
    fx.srv.wait_for_task(&task).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Option combinations

#[derive(Debug, Clone)]
struct QueryOptions {
    limit: u32,
    offset: u32,
    /// `(field, direction, whether the field is sortable)`, `None` when the generator does not
    /// know (an arbitrary name may be a fine custom key).
    sort: Vec<(String, i32, Option<bool>)>,
    page_token: String,
    include_deactivated: bool,
}

impl QueryOptions {
    /// Whether the contract accepts the options; `None` when that hangs on a field name the
    /// generator made up.
    fn valid(&self) -> Option<bool> {
        let canonical: BTreeSet<String> = self
            .sort
            .iter()
            .map(|(f, _, _)| match f.as_str() {
                "score" | "address.city" => format!("custom.{f}"),
                other => other.to_owned(),
            })
            .collect();
        let fixed = self.limit <= 100
            && self.offset <= 1000
            && self.page_token.is_empty()
            && self.sort.len() <= 5
            && self.sort.iter().all(|(_, d, _)| [-1, 0, 1].contains(d));
        if !fixed || self.sort.iter().any(|(_, _, ok)| *ok == Some(false)) {
            return Some(false);
        }
        if self.sort.iter().any(|(_, _, ok)| ok.is_none()) {
            return None;
        }
        Some(canonical.len() == self.sort.len())
    }
}

fn query_options() -> impl Strategy<Value = QueryOptions> {
    (
        prop_oneof![4 => 0u32..=110, 1 => any::<u32>()],
        prop_oneof![4 => Just(0u32), 3 => 0u32..=1010, 1 => any::<u32>()],
        prop::collection::vec(
            (
                prop_oneof![
                    4 => select(vec![
                        "id", "name", "created_at", "updated_at", "teams", "score",
                        "custom.score", "address.city", "invisible", "last_active",
                    ])
                    .prop_map(|f| (f.to_owned(), Some(true))),
                    1 => select(vec!["", "deleted_at", "custom", "a..b", "$where", "teams_role"])
                        .prop_map(|f| (f.to_owned(), Some(false))),
                    1 => filter_field().prop_map(|f| (f, None)),
                ],
                prop_oneof![4 => select(vec![-1, 0, 1]), 1 => any::<i32>()],
            ),
            0..7,
        ),
        prop_oneof![
            6 => Just(String::new()),
            1 => "[A-Za-z0-9_-]{1,40}",
            1 => any_text(),
            1 => Just("eyJzIjoieCIsImsiOltdfQ".to_owned()),
            1 => (70_000usize..80_000).prop_map(|len| "A".repeat(len)),
        ],
        any::<bool>(),
    )
        .prop_map(
            |(limit, offset, sort, page_token, include_deactivated)| QueryOptions {
                limit,
                offset,
                sort: sort
                    .into_iter()
                    .map(|((field, ok), direction)| (field, direction, ok))
                    .collect(),
                page_token,
                include_deactivated,
            },
        )
}

#[test]
fn query_option_combinations() {
    check(query_options(), async |fx: &Fixture, o: QueryOptions| {
        let request = QueryUsersRequest {
            filter: None,
            sort: o
                .sort
                .iter()
                .map(|(field, direction, _)| SortField {
                    field: field.clone(),
                    direction: *direction,
                })
                .collect(),
            limit: o.limit,
            offset: o.offset,
            page_token: o.page_token.clone(),
            include_deactivated_users: o.include_deactivated,
        };
        let outcome = fx.attempt("QueryUsers", &[], fx.srv.query(request)).await?;
        match o.valid() {
            Some(true) => {
                let page =
                    outcome.ok_or_else(|| TestCaseError::fail("valid options were refused"))?;
                let limit = if o.limit == 0 { 30 } else { o.limit as usize };
                prop_assert!(page.users.len() <= limit);
            }
            Some(false) => must_be_invalid("invalid query options", &outcome)?,
            None => {}
        }
        Ok(())
    });
}

#[derive(Debug, Clone)]
struct DeleteCase {
    ids: Vec<(String, bool)>,
    user: &'static str,
    conversations: &'static str,
    messages: &'static str,
    calls: &'static str,
    files: bool,
    new_channel_owner_id: Option<(String, bool)>,
    created_by_id: Option<String>,
    request_id: Option<String>,
}

impl DeleteCase {
    fn valid(&self) -> bool {
        let distinct: BTreeSet<&String> = self.ids.iter().map(|(id, _)| id).collect();
        let hard = self.user == "hard";
        !self.ids.is_empty()
            && self.ids.len() <= 100
            && self.ids.iter().all(|(_, ok)| *ok)
            && distinct.len() == self.ids.len()
            && ["", "soft", "pruning", "hard"].contains(&self.user)
            && ["", "soft", "hard"].contains(&self.conversations)
            && ["", "soft", "pruning", "hard"].contains(&self.messages)
            && ["", "soft", "hard"].contains(&self.calls)
            && (!hard || (self.messages == "hard" && self.conversations == "hard"))
            && self
                .new_channel_owner_id
                .as_ref()
                .is_none_or(|(id, ok)| id.is_empty() || *ok)
            && self
                .request_id
                .as_ref()
                .is_none_or(|r| !r.is_empty() && r.chars().count() <= 255 && !r.contains('\0'))
            && self.created_by_id.as_deref().is_none_or(valid_id)
    }
}

fn delete_case() -> impl Strategy<Value = DeleteCase> {
    let mode = || select(vec!["", "soft", "pruning", "hard", "HARD", "nope", " soft"]);
    (
        prop_oneof![
            6 => prop::collection::vec(id(), 1..4),
            1 => Just(Vec::new()),
            1 => (101usize..120).prop_map(|count| (0..count).map(|i| (format!("ghost-{i}"), true)).collect()),
            1 => id().prop_map(|id| vec![id.clone(), id]),
        ],
        (mode(), mode(), mode(), mode(), any::<bool>()),
        prop::option::of(id()),
        prop::option::of(any_text()),
        prop::option::of(prop_oneof![3 => any_text(), 1 => (250usize..300).prop_map(|len| "r".repeat(len))]),
    )
        .prop_map(|(ids, (user, conversations, messages, calls, files), owner, created_by_id, request_id)| DeleteCase {
            // Ids no user has: a valid request is NOT_FOUND, and nothing is ever deleted.
            ids: ids.into_iter().map(|(id, ok)| (if ok { format!("ghost-{id}").chars().take(255).collect() } else { id }, ok)).collect(),
            user,
            conversations,
            messages,
            calls,
            files,
            new_channel_owner_id: owner,
            created_by_id,
            request_id,
        })
}

#[test]
fn delete_option_combinations() {
    check(delete_case(), async |fx: &Fixture, case: DeleteCase| {
        let request = DeleteUsersRequest {
            user_ids: case.ids.iter().map(|(id, _)| id.clone()).collect(),
            user: case.user.into(),
            conversations: case.conversations.into(),
            messages: case.messages.into(),
            calls: case.calls.into(),
            files: case.files,
            new_channel_owner_id: case.new_channel_owner_id.as_ref().map(|(id, _)| id.clone()),
            new_call_owner_id: None,
            created_by_id: case.created_by_id.clone(),
            request_id: case.request_id.clone(),
        };
        let mut client = fx.srv.users();
        let outcome = call(client.delete_users(request)).await?;
        match outcome {
            Ok(response) => prop_assert!(
                false,
                "deleting users that do not exist succeeded: {response:?}"
            ),
            Err(status) if case.valid() => {
                prop_assert_eq!(
                    status.code(),
                    Code::NotFound,
                    "valid options, unknown users: {:?}",
                    status
                );
            }
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status);
                assert_precise_rejection(&status, "DeleteUsers")?;
            }
        }
        fx.assert_no_write_since_last_probe("DeleteUsers").await?;
        fx.assert_serving().await
    });
}

/// Whether the contract accepts `id` as a user id: 1 to 255 of `a-z A-Z 0-9 @ _ -`.
fn valid_id(id: &str) -> bool {
    (1..=255).contains(&id.chars().count())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_-".contains(c))
}

/// Ids in the id-taking reads and writes: a malformed id is INVALID_ARGUMENT, a well-formed id
/// of nobody NOT_FOUND, never an internal error, and nothing is written.
#[test]
fn ids_everywhere() {
    let strategy = (
        prop_oneof![
            3 => id().prop_map(|(id, _)| id),
            1 => select(SEEDED.to_vec()).prop_map(str::to_owned),
            1 => any_text(),
        ],
        any::<bool>(),
        prop::option::of(any_text()),
    );
    check(
        strategy,
        async |fx: &Fixture,
               (id, include_deleted, created_by_id): (String, bool, Option<String>)| {
            let mut client = fx.srv.users();
            let got = call(client.get_user(GetUserRequest {
                id: id.clone(),
                include_deleted,
            }))
            .await?;
            match &got {
                Ok(_) => prop_assert!(SEEDED.contains(&id.as_str()), "GetUser found {id:?}"),
                Err(status) if valid_id(&id) => {
                    prop_assert_eq!(status.code(), Code::NotFound, "GetUser: {:?}", status)
                }
                Err(status) => {
                    prop_assert_eq!(
                        status.code(),
                        Code::InvalidArgument,
                        "GetUser: {:?}",
                        status
                    );
                    assert_precise_rejection(status, "GetUser")?;
                }
            }
            // A partial update of a well-formed id of nobody is NOT_FOUND, and writes nothing.
            if !SEEDED.contains(&id.as_str()) && id != PROBE {
                let updated = fx
                    .attempt(
                        "UpdateUsersPartial",
                        &[Code::NotFound],
                        fx.srv.update_partial([partial(&id, json!({"x": 1}), &[])]),
                    )
                    .await?;
                must_be_invalid("a partial update of nobody", &updated)?;
            }
            // Restoring a live or unknown user is refused whatever the id looks like.
            let restored = fx
                .attempt(
                    "RestoreUsers",
                    &[Code::NotFound, Code::FailedPrecondition],
                    client.restore_users(RestoreUsersRequest {
                        user_ids: vec![id],
                        created_by_id,
                        request_id: None,
                    }),
                )
                .await?;
            must_be_invalid("restoring a user that is not deleted", &restored)
        },
    );
}

/// Free-text fields that land in the change feed and the task payload (`created_by_id`, a new
/// name on reactivation): stored as given, or refused precisely, never an internal error.
#[test]
fn actor_fields_are_stored_or_refused() {
    let strategy = (
        select(SEEDED.to_vec()),
        prop::option::of(any_text()),
        prop::option::of(any_text()),
        any::<bool>(),
    );
    check(
        strategy,
        async |fx: &Fixture,
               (target, created_by_id, name, flag): (
            &'static str,
            Option<String>,
            Option<String>,
            bool,
        )| {
            let mut client = fx.srv.users();
            let deactivated = fx
                .attempt(
                    "DeactivateUser",
                    &[],
                    client.deactivate_user(DeactivateUserRequest {
                        user_id: target.to_owned(),
                        mark_messages_deleted: flag,
                        created_by_id: created_by_id.clone(),
                    }),
                )
                .await?;
            let actor_ok = created_by_id.as_deref().is_none_or(valid_id);
            prop_assert_eq!(
                deactivated.is_some(),
                actor_ok,
                "created_by_id is a user id: accepted exactly when well formed"
            );
            let Some(deactivated) = deactivated else {
                return Ok(());
            };
            let task = deactivated.into_inner().task_id;
            fx.srv.wait_for_task(&task).await;
            let stored = call(fx.srv.get(target))
                .await?
                .map_err(|s| TestCaseError::fail(format!("GetUser: {s:?}")))?;
            prop_assert!(stored.deactivated_at.is_some());
            let reactivated = fx
                .attempt(
                    "ReactivateUser",
                    &[],
                    client.reactivate_user(ReactivateUserRequest {
                        user_id: target.to_owned(),
                        restore_messages: flag,
                        name: name.clone(),
                        created_by_id,
                    }),
                )
                .await?;
            match reactivated {
                Some(response) => {
                    fx.srv.wait_for_task(&response.into_inner().task_id).await;
                    let stored = call(fx.srv.get(target))
                        .await?
                        .map_err(|s| TestCaseError::fail(format!("GetUser: {s:?}")))?;
                    prop_assert!(stored.deactivated_at.is_none());
                    if let Some(name) = name {
                        prop_assert_eq!(stored.name, Some(name));
                    }
                }
                None => {
                    prop_assert!(
                        name.as_deref().is_some_and(|n| n.contains('\0')),
                        "reactivation refused without a NUL in the name"
                    );
                    // Leave the user active for the next case.
                    let response = call(client.reactivate_user(ReactivateUserRequest {
                        user_id: target.to_owned(),
                        ..ReactivateUserRequest::default()
                    }))
                    .await?
                    .map_err(|s| TestCaseError::fail(format!("ReactivateUser: {s:?}")))?;
                    fx.srv.wait_for_task(&response.into_inner().task_id).await;
                }
            }
            call(fx.srv.upsert([seed(target)]))
                .await?
                .map_err(|s| TestCaseError::fail(format!("reseeding: {s:?}")))?;
            fx.resync().await
        },
    );
}

/// The extremes a double holds, in custom data: stored, and read back exactly by `GetUser`,
/// `QueryUsers` and the change feed. (PostgreSQL's jsonb writes `f64::MAX` as a 309-digit
/// integer and `5e-324` with 323 zeros; both must parse back to the same double.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_numbers_round_trip() {
    let srv = Launch::new().start().await;
    let extremes = [
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        1e308,
        -1.1485026682585943e-293,
        -8.852788847846353e18,
        9_007_199_254_740_993.0,
    ];
    let custom = obj(vec![(
        "huge".into(),
        list(extremes.iter().map(|x| n(*x)).collect()),
    )]);
    let sent = json_from_struct(&as_struct(custom.clone()));
    let request = UserRequest {
        custom: Some(as_struct(custom)),
        ..user("extreme")
    };
    srv.upsert_ok([request]).await;
    assert_eq!(custom_of(&srv.get_ok("extreme").await), sent, "GetUser");
    let listed = srv
        .query(QueryUsersRequest::default())
        .await
        .expect("QueryUsers lists the user");
    assert_eq!(custom_of(&listed.users[0]), sent, "QueryUsers");
    let events = srv.events(&["user.created"], 1).await;
    let snapshot = events[0].user.as_ref().expect("the event carries the user");
    assert_eq!(custom_of(snapshot), sent, "change feed");
}

/// A refusal that would echo a 6 KiB key (twice: a conflict names both paths) still reaches the
/// caller as INVALID_ARGUMENT: the echo is shortened to fit the response headers.
#[tokio::test]
async fn a_refusal_echoing_a_huge_key_still_arrives() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    let key = "k".repeat(6000);
    let status = expect_err(
        srv.update_partial([partial("u1", json!({}), &[&key, "custom"])])
            .await,
    );
    assert_invalid(&status, "users[0].unset");
    assert!(
        custom_of(&srv.get_ok("u1").await)
            .as_object()
            .is_some_and(|c| c.is_empty())
    );
}
