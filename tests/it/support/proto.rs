//! How tests talk to roster: channels (with and without a client-side deadline), health, clients,
//! request builders, JSON <-> `Struct`, bearer tokens, a tiny HTTP GET, a change-feed follower,
//! and the assertions on statuses that tests share.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp};
use roster::pb::event_service_client::EventServiceClient;
use roster::pb::task_service_client::TaskServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use roster::pb::{
    DeleteUsersRequest, GetUserRequest, QueryUsersRequest, UpdateUserPartialRequest,
    UpdateUsersRequest, User, UserChangeEvent, UserRequest, WatchUserEventsRequest,
    WatchUserEventsResponse,
};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_types::StatusExt;

/// How often pollers look again.
pub const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Addresses, channels, health

/// A port that was free a moment ago (for settings that take an address, not a listener).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

pub fn free_loopback_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A plaintext channel that connects on first use, with a 10 s deadline on each call.
pub fn plain_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// A plaintext channel to `addr` without a client-side deadline, so that what roster answers
/// (after waiting for a database connection) is what the test sees.
pub fn patient_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// Health of service "" over `channel`: the status, or why there is none.
pub async fn health_status(channel: &Channel) -> Result<ServingStatus, String> {
    let mut health = HealthClient::new(channel.clone());
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(response)) => Ok(response.get_ref().status()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("health check timed out".to_owned()),
    }
}

/// How long a health watcher may wait for the next status.
const WATCH_DEADLINE: Duration = Duration::from_secs(10);

/// `grpc.health.v1.Health/Watch` for service "" on `addr`, as a probe that follows it would.
pub async fn watch_health(addr: SocketAddr) -> Streaming<HealthCheckResponse> {
    HealthClient::new(plain_channel(addr))
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("Health/Watch on {addr}: {status:?}"))
        .into_inner()
}

/// Reads `stream` until it reports `want`; fails if it ends first or takes too long.
pub async fn next_status(
    port: &str,
    stream: &mut Streaming<HealthCheckResponse>,
    want: ServingStatus,
) {
    let deadline = Instant::now() + WATCH_DEADLINE;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("the {port} port did not report {want:?} in time"));
        match next {
            Ok(Some(response)) if response.status() == want => return,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the {port} port closed its health watch before {want:?}"),
            Err(status) => {
                panic!("the {port} port ended its health watch before {want:?}: {status:?}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and requests

/// An HS256 JWT over `claims`, signed with `secret`.
pub fn token(secret: &str, claims: &Json) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("sign a JWT")
}

/// `message` with `authorization: <value>`.
pub fn with_authorization<T>(message: T, value: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        value.parse().expect("ASCII authorization header"),
    );
    request
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    with_authorization(message, &format!("Bearer {token}"))
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `GET <path>` over HTTP/1.1 from `addr`: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        socket
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no header end in {text:?}"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok((code, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET {path} from {addr} timed out"))?
}

/// Bytes of a hex string (test data only; panics on bad input).
pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Clients and users

pub fn users_client(channel: &Channel) -> UserServiceClient<Channel> {
    UserServiceClient::new(channel.clone())
}

pub fn tasks_client(channel: &Channel) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channel.clone())
}

/// `<prefix>-0000`, `<prefix>-0001`, ...
pub fn numbered_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// A user with every field pruning clears: name, image, custom, teams, teams_role.
pub fn full_user(id: &str) -> UserRequest {
    user(id)
        .with_name(&format!("Name of {id}"))
        .with_image(&format!("https://img.example/{id}.png"))
        .with_custom(json!({"color": "blue", "nested": {"n": 1}}))
        .with_teams(&["red", "blue"])
        .with_team_role("red", "admin")
}

/// Creates `full_user`s, 100 per UpdateUsers call.
pub async fn create_users(channel: &Channel, ids: &[String]) -> BTreeMap<String, User> {
    let mut client = users_client(channel);
    let mut created = BTreeMap::new();
    for chunk in ids.chunks(100) {
        let users = chunk.iter().map(|id| (id.clone(), full_user(id))).collect();
        let response = client
            .update_users(UpdateUsersRequest { users })
            .await
            .unwrap_or_else(|status| panic!("UpdateUsers: {status:?}"))
            .into_inner();
        created.extend(response.users);
    }
    assert_eq!(created.len(), ids.len(), "every user created");
    created
}

pub async fn fetch_user(
    channel: &Channel,
    id: &str,
    include_deleted: bool,
) -> Result<User, Status> {
    let response = users_client(channel)
        .get_user(GetUserRequest {
            id: id.to_owned(),
            include_deleted,
        })
        .await?;
    Ok(response.into_inner().user.expect("GetUser without a user"))
}

/// Every user `QueryUsers` returns (deleted never), walking every page, by id.
pub async fn all_users(
    channel: &Channel,
    include_deactivated_users: bool,
) -> BTreeMap<String, User> {
    let mut client = users_client(channel);
    let mut users = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query_users(QueryUsersRequest {
                limit: 100,
                page_token: page_token.clone(),
                include_deactivated_users,
                ..QueryUsersRequest::default()
            })
            .await
            .unwrap_or_else(|status| panic!("QueryUsers: {status:?}"))
            .into_inner();
        users.extend(page.users.into_iter().map(|u| (u.id.clone(), u)));
        if page.next_page_token.is_empty() {
            return users;
        }
        assert!(users.len() <= 100_000, "QueryUsers page walk does not end");
        page_token = page.next_page_token;
    }
}

/// Ids `QueryUsers` returns (deleted never), walking every page, sorted.
pub async fn query_ids(channel: &Channel, include_deactivated_users: bool) -> Vec<String> {
    all_users(channel, include_deactivated_users)
        .await
        .into_keys()
        .collect()
}

/// A DeleteUsers request; `hard` comes with the `messages`/`conversations: hard` it requires.
pub fn delete_request(ids: &[String], mode: &str) -> DeleteUsersRequest {
    let hard = if mode == "hard" { "hard" } else { "" };
    DeleteUsersRequest {
        user_ids: ids.to_vec(),
        user: mode.to_owned(),
        messages: hard.to_owned(),
        conversations: hard.to_owned(),
        ..DeleteUsersRequest::default()
    }
}

/// DeleteUsers that must succeed; its task id.
pub async fn delete_users(channel: &Channel, ids: &[String], mode: &str) -> String {
    users_client(channel)
        .delete_users(delete_request(ids, mode))
        .await
        .unwrap_or_else(|status| panic!("DeleteUsers ({mode}): {status:?}"))
        .into_inner()
        .task_id
}

/// Now, in microseconds since the epoch (the test machine's clock, which the server shares).
pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_micros()).expect("microseconds fit")
}

// ---------------------------------------------------------------------------------------------
// Building requests

/// A `UserRequest` with only its id: a replace with it resets every caller field.
pub fn user(id: &str) -> UserRequest {
    UserRequest {
        id: id.to_owned(),
        ..UserRequest::default()
    }
}

/// Fluent setters for the fields tests set most.
pub trait UserRequestExt: Sized {
    fn with_name(self, name: &str) -> Self;
    fn with_image(self, image: &str) -> Self;
    fn with_role(self, role: &str) -> Self;
    fn with_custom(self, custom: Json) -> Self;
    fn with_language(self, language: &str) -> Self;
    fn with_teams(self, teams: &[&str]) -> Self;
    fn with_team_role(self, team: &str, role: &str) -> Self;
}

impl UserRequestExt for UserRequest {
    fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
    fn with_image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }
    fn with_role(mut self, role: &str) -> Self {
        self.role = Some(role.to_owned());
        self
    }
    fn with_custom(mut self, custom: Json) -> Self {
        self.custom = Some(struct_from(custom));
        self
    }
    fn with_language(mut self, language: &str) -> Self {
        self.language = language.to_owned();
        self
    }
    fn with_teams(mut self, teams: &[&str]) -> Self {
        self.teams = teams.iter().map(|team| (*team).to_owned()).collect();
        self
    }
    fn with_team_role(mut self, team: &str, role: &str) -> Self {
        self.teams_role.insert(team.to_owned(), role.to_owned());
        self
    }
}

/// One partial update: `set` is a JSON object, `unset` a list of keys.
pub fn partial(id: &str, set: Json, unset: &[&str]) -> UpdateUserPartialRequest {
    UpdateUserPartialRequest {
        id: id.to_owned(),
        set: Some(struct_from(set)),
        unset: unset.iter().map(|key| (*key).to_owned()).collect(),
    }
}

/// A `QueryUsersRequest` for `filter` with limit 100 and the default sort.
pub fn filter_query(filter: Json) -> QueryUsersRequest {
    QueryUsersRequest {
        filter: Some(struct_from(filter)),
        limit: 100,
        ..QueryUsersRequest::default()
    }
}

pub fn ids(users: &[User]) -> Vec<String> {
    users.iter().map(|user| user.id.clone()).collect()
}

/// Sorted, owned ids: `id_set(["b", "a"]) == ["a", "b"]`.
pub fn id_set<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<String> = ids.into_iter().map(str::to_owned).collect();
    set.into_iter().collect()
}

pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------
// JSON <-> google.protobuf.Struct

/// A JSON object as a `Struct`. Panics on anything but an object.
pub fn struct_from(json: Json) -> Struct {
    match json {
        Json::Object(map) => Struct {
            fields: map
                .into_iter()
                .map(|(key, value)| (key, value_from(value)))
                .collect(),
        },
        other => panic!("a Struct must be a JSON object, not {other}"),
    }
}

pub fn value_from(json: Json) -> prost_types::Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().expect("JSON number as f64")),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(value_from).collect(),
        }),
        object @ Json::Object(_) => Kind::StructValue(struct_from(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `Struct` as JSON. Whole numbers come back as integers, so `json!({"n": 1})` round-trips.
pub fn json_from_struct(s: &Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(key, value)| (key.clone(), json_from_value(value)))
            .collect(),
    )
}

pub fn json_from_value(value: &prost_types::Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Json::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
            }
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Json::Array(list.values.iter().map(json_from_value).collect())
        }
        Some(Kind::StructValue(s)) => json_from_struct(s),
    }
}

/// A user's custom data as JSON; `{}` when the server sent none.
pub fn custom_of(user: &User) -> Json {
    user.custom
        .as_ref()
        .map_or_else(|| Json::Object(Default::default()), json_from_struct)
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/// Microseconds since the epoch of a timestamp the server must have set.
#[track_caller]
pub fn micros(timestamp: &Option<Timestamp>) -> i64 {
    let t = timestamp.as_ref().expect("timestamp is set");
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

/// RFC 3339 text of a timestamp the server must have set, as filters take it.
#[track_caller]
pub fn rfc3339(timestamp: &Option<Timestamp>) -> String {
    timestamp.as_ref().expect("timestamp is set").to_string()
}

/// Microseconds since the epoch of a timestamp (absent is a failure).
#[track_caller]
pub fn ts_micros(ts: &Option<Timestamp>, what: &str) -> i64 {
    let t = ts
        .as_ref()
        .unwrap_or_else(|| panic!("{what} should be set"));
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The error of a call that must fail.
#[track_caller]
pub fn expect_err<T: Debug>(result: Result<T, Status>) -> Status {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(status) => status,
    }
}

/// INVALID_ARGUMENT with a BadRequest field violation on `field` (or inside it: `field.x`,
/// `field[x]`).
#[track_caller]
pub fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT, got {status:?}"
    );
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT without google.rpc.BadRequest: {status:?}"));
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    let names_field = |path: &str| {
        path == field
            || path
                .strip_prefix(field)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    assert!(
        fields.iter().any(|path| names_field(path)),
        "expected a field violation on {field:?}, got {fields:?} ({status:?})"
    );
}

/// INVALID_ARGUMENT naming one user of a list request (`UpdateUsersPartial`) and `field` within
/// it: the path may name the user by its index in the list (`users[1].role`, as for any repeated
/// field) or by its id (`users[u1].role`); the contract only says the error names the user.
#[track_caller]
pub fn assert_invalid_user(status: &Status, index: usize, id: &str, field: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT, got {status:?}"
    );
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT without google.rpc.BadRequest: {status:?}"));
    let by_index = format!("users[{index}]{field}");
    let by_id = format!("users[{id}]{field}");
    assert!(
        bad_request
            .field_violations
            .iter()
            .any(|v| v.field.starts_with(&by_index) || v.field.starts_with(&by_id)),
        "expected a field violation on {by_index} or {by_id}, got {:?}",
        bad_request.field_violations
    );
}

/// `code` with a google.rpc.ErrorInfo whose reason is `reason`.
#[track_caller]
pub fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} {reason}, got {status:?}"
    );
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{code:?} without google.rpc.ErrorInfo: {status:?}"));
    assert_eq!(info.reason, reason, "ErrorInfo reason of {status:?}");
}

// ---------------------------------------------------------------------------------------------
// The change feed

pub fn events_client(channel: &Channel) -> EventServiceClient<Channel> {
    EventServiceClient::new(channel.clone())
}

pub fn watch_request(after: i64, kinds: &[&str], user_ids: &[&str]) -> WatchUserEventsRequest {
    WatchUserEventsRequest {
        after_sequence: after,
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        user_ids: user_ids.iter().map(|u| (*u).to_owned()).collect(),
    }
}

/// An open `WatchUserEvents` stream.
pub struct Feed {
    stream: Streaming<WatchUserEventsResponse>,
    /// The sequence of the last event received (the request's `after_sequence` before any).
    pub last: i64,
}

impl Feed {
    /// Opens a follower; the error of the call itself, if any.
    pub async fn open(channel: &Channel, request: WatchUserEventsRequest) -> Result<Feed, Status> {
        let last = request.after_sequence;
        let stream = events_client(channel)
            .watch_user_events(request)
            .await?
            .into_inner();
        Ok(Feed { stream, last })
    }

    /// Opens a follower of every event after `after`; must succeed.
    pub async fn after(channel: &Channel, after: i64) -> Feed {
        Self::open(channel, watch_request(after, &[], &[]))
            .await
            .unwrap_or_else(|status| panic!("WatchUserEvents after {after}: {status:?}"))
    }

    /// The next event, `Ok(None)` if none arrives within `within`, `Err` if the stream ends
    /// with an error. A stream that ends cleanly is a failure (the feed follows forever).
    pub async fn try_next(&mut self, within: Duration) -> Result<Option<UserChangeEvent>, Status> {
        match tokio::time::timeout(within, self.stream.message()).await {
            Err(_) => Ok(None),
            Ok(Err(status)) => Err(status),
            Ok(Ok(None)) => panic!("the change feed ended without an error after {}", self.last),
            Ok(Ok(Some(response))) => {
                let event = response
                    .event
                    .expect("WatchUserEventsResponse without an event");
                self.last = event.sequence;
                Ok(Some(event))
            }
        }
    }

    /// The next event, which must arrive within `within`.
    pub async fn next(&mut self, within: Duration) -> UserChangeEvent {
        match self.try_next(within).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("no event after sequence {} within {within:?}", self.last),
            Err(status) => panic!("the change feed failed after {}: {status:?}", self.last),
        }
    }

    /// `n` events, all within `within`.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<UserChangeEvent> {
        let deadline = Instant::now() + within;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Ok(Some(event)) => out.push(event),
                Ok(None) => panic!(
                    "{} of {n} events within {within:?}; last {:?}",
                    out.len(),
                    out.last().map(brief_event)
                ),
                Err(status) => panic!(
                    "the change feed failed after {} of {n} events: {status:?}",
                    out.len()
                ),
            }
        }
        out
    }

    /// Events up to and including the first one `stop` accepts, all within `within`.
    pub async fn until(
        &mut self,
        within: Duration,
        stop: impl Fn(&UserChangeEvent) -> bool,
    ) -> Vec<UserChangeEvent> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Ok(Some(event)) => {
                    let done = stop(&event);
                    out.push(event);
                    if done {
                        return out;
                    }
                }
                Ok(None) => panic!(
                    "the awaited event did not come within {within:?}; {} events received, last \
                     {:?}",
                    out.len(),
                    out.last().map(brief_event)
                ),
                Err(status) => panic!(
                    "the change feed failed after {} events (last {:?}): {status:?}",
                    out.len(),
                    out.last().map(brief_event)
                ),
            }
        }
    }

    /// Asserts that nothing arrives for `quiet` (the follower is holding back).
    pub async fn expect_quiet(&mut self, quiet: Duration, why: &str) {
        match self.try_next(quiet).await {
            Ok(None) => {}
            Ok(Some(event)) => panic!("{why}: got {:?}", brief_event(&event)),
            Err(status) => panic!("{why}: the feed failed with {status:?}"),
        }
    }
}

/// The error a `WatchUserEvents` call ends with: from the call itself or from its first message
/// (within `within`). Panics if it delivers an event or stays silent.
pub async fn watch_error(
    channel: &Channel,
    request: WatchUserEventsRequest,
    within: Duration,
) -> Status {
    let mut feed = match Feed::open(channel, request.clone()).await {
        Err(status) => return status,
        Ok(feed) => feed,
    };
    match feed.try_next(within).await {
        Err(status) => status,
        Ok(Some(event)) => panic!(
            "WatchUserEvents {request:?} should fail, delivered {:?}",
            brief_event(&event)
        ),
        Ok(None) => panic!("WatchUserEvents {request:?} should fail, stayed open {within:?}"),
    }
}

/// `(sequence, kind, user_id, name)`, for messages.
pub fn brief_event(e: &UserChangeEvent) -> (i64, String, String, Option<String>) {
    (
        e.sequence,
        e.kind.clone(),
        e.user_id.clone(),
        e.user.as_ref().and_then(|u| u.name.clone()),
    )
}

/// The name in the event's user snapshot (panics when the snapshot is absent).
#[track_caller]
pub fn snapshot_name(e: &UserChangeEvent) -> String {
    e.user
        .as_ref()
        .unwrap_or_else(|| panic!("event without a user: {:?}", brief_event(e)))
        .name
        .clone()
        .unwrap_or_default()
}

#[track_caller]
pub fn assert_strictly_increasing(events: &[UserChangeEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].sequence < pair[1].sequence,
            "sequences must strictly increase: {:?} then {:?}",
            brief_event(&pair[0]),
            brief_event(&pair[1])
        );
    }
}
