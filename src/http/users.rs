//! Users: upsert, partial update, query, and the lifecycle calls (deactivate, reactivate, delete,
//! restore), in Stream's shapes.
use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::Uri;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::convert::{self, UserRequest};
use super::error::{HttpResult, Reply};
use super::extract::{JsonBody, json_param};
use crate::app::{App, IdRange, QueryRequest};
use crate::domain::access::Caller;
use crate::domain::lifecycle::DeleteOptionsInput;
use crate::domain::lifecycle_request::LifecycleRequest;
use crate::domain::partial::PartialUpdate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpsertBody {
    users: BTreeMap<String, UserRequest>,
}

/// POST /api/v2/users
pub(super) async fn upsert(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<UpsertBody>,
) -> HttpResult {
    let users = body
        .users
        .into_iter()
        .map(|(key, user)| Ok((key, user.into())));
    let users = app.upsert_users(&caller, users).await?;
    Ok(users_answer(&app, users))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartialBody {
    users: Vec<PartialRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialRequest {
    id: String,
    #[serde(default)]
    set: Option<Map<String, Value>>,
    #[serde(default)]
    unset: Option<Vec<String>>,
}

/// PATCH /api/v2/users
pub(super) async fn update_partial(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<PartialBody>,
) -> HttpResult {
    let updates = body.users.into_iter().map(|u| {
        Ok(PartialUpdate {
            id: u.id,
            set: u.set.unwrap_or_default(),
            unset: u.unset.unwrap_or_default(),
        })
    });
    let users = app.update_users_partial(&caller, updates).await?;
    Ok(users_answer(&app, users))
}

fn users_answer(app: &App, users: Vec<crate::domain::user::User>) -> Reply {
    Reply::of(json!({
        "users": convert::user_map(users, app.as_of_now()),
        "membership_deletion_task_id": "",
    }))
}

/// Stream's `QueryUsersPayload`. The SDKs send `null` for keys they were not given.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryPayload {
    #[serde(default)]
    filter_conditions: Option<Map<String, Value>>,
    #[serde(default)]
    sort: Option<Vec<SortParam>>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u32>,
    #[serde(default)]
    include_deactivated_users: Option<bool>,
    /// Presence is always computed; accepted for the SDKs' sake.
    #[serde(default)]
    #[allow(dead_code)]
    presence: Option<bool>,
    /// Client-side fields of the hosted API; a server-side call has no user to act as.
    #[serde(default)]
    #[allow(dead_code)]
    user_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<Value>,
    #[serde(default)]
    id_gt: Option<String>,
    #[serde(default)]
    id_gte: Option<String>,
    #[serde(default)]
    id_lt: Option<String>,
    #[serde(default)]
    id_lte: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SortParam {
    field: String,
    /// 1 ascending (the default), -1 descending.
    #[serde(default)]
    direction: Option<i32>,
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    kind: Option<String>,
}

/// GET /api/v2/users?payload=<JSON>
pub(super) async fn query(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> HttpResult {
    let payload: QueryPayload = json_param(&uri, "payload")?;
    let request = QueryRequest {
        filter: payload.filter_conditions,
        sort: payload
            .sort
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.field, s.direction.unwrap_or(1)))
            .collect(),
        limit: payload.limit.unwrap_or_default(),
        offset: payload.offset.unwrap_or_default(),
        page_token: String::new(),
        include_deactivated_users: payload.include_deactivated_users.unwrap_or_default(),
        id_range: IdRange {
            gt: payload.id_gt,
            gte: payload.id_gte,
            lt: payload.id_lt,
            lte: payload.id_lte,
        },
    };
    let page = app.query_users(&caller, &request).await?;
    let as_of = app.as_of_now();
    let users: Vec<Value> = page
        .users
        .into_iter()
        .map(|u| convert::user(u, as_of))
        .collect();
    Ok(Reply::of(json!({ "users": users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeactivateOneBody {
    #[serde(default)]
    created_by_id: Option<String>,
    #[serde(default)]
    mark_messages_deleted: Option<bool>,
}

/// POST /api/v2/users/{user_id}/deactivate
pub(super) async fn deactivate_one(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<DeactivateOneBody>,
) -> HttpResult {
    let request = LifecycleRequest::DeactivateOne {
        user_id,
        mark_messages_deleted: body.mark_messages_deleted.unwrap_or_default(),
        created_by_id: body.created_by_id,
    };
    one_user(&app, &caller, request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReactivateOneBody {
    #[serde(default)]
    created_by_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    restore_messages: Option<bool>,
}

/// POST /api/v2/users/{user_id}/reactivate
pub(super) async fn reactivate_one(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<ReactivateOneBody>,
) -> HttpResult {
    let request = LifecycleRequest::ReactivateOne {
        user_id,
        restore_messages: body.restore_messages.unwrap_or_default(),
        created_by_id: body.created_by_id,
        name: body.name,
    };
    one_user(&app, &caller, request).await
}

/// A one-user lifecycle call: `{user}` as the user now is.
async fn one_user(app: &App, caller: &Caller, request: LifecycleRequest) -> HttpResult {
    let (_, users) = app.enqueue_lifecycle(caller, request).await?;
    let as_of = app.as_of_now();
    let mut answer = Map::new();
    if let Some(user) = users.into_iter().next() {
        answer.insert("user".to_owned(), convert::user(user, as_of));
    }
    Ok(Reply(answer))
}

/// A many-user lifecycle call: `{task_id}`.
async fn many_users(app: &App, caller: &Caller, request: LifecycleRequest) -> HttpResult {
    let (task_id, _) = app.enqueue_lifecycle(caller, request).await?;
    Ok(Reply::of(json!({ "task_id": task_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeactivateManyBody {
    user_ids: Vec<String>,
    #[serde(default)]
    created_by_id: Option<String>,
    #[serde(default)]
    mark_messages_deleted: Option<bool>,
    #[serde(default)]
    mark_channels_deleted: Option<bool>,
}

/// POST /api/v2/users/deactivate
pub(super) async fn deactivate_many(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<DeactivateManyBody>,
) -> HttpResult {
    let request = LifecycleRequest::DeactivateMany {
        user_ids: body.user_ids,
        mark_messages_deleted: body.mark_messages_deleted.unwrap_or_default(),
        mark_channels_deleted: body.mark_channels_deleted.unwrap_or_default(),
        created_by_id: body.created_by_id,
        request_id: None,
    };
    many_users(&app, &caller, request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReactivateManyBody {
    user_ids: Vec<String>,
    #[serde(default)]
    created_by_id: Option<String>,
    #[serde(default)]
    restore_messages: Option<bool>,
    #[serde(default)]
    restore_channels: Option<bool>,
}

/// POST /api/v2/users/reactivate
pub(super) async fn reactivate_many(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<ReactivateManyBody>,
) -> HttpResult {
    let request = LifecycleRequest::ReactivateMany {
        user_ids: body.user_ids,
        restore_messages: body.restore_messages.unwrap_or_default(),
        restore_channels: body.restore_channels.unwrap_or_default(),
        created_by_id: body.created_by_id,
        request_id: None,
    };
    many_users(&app, &caller, request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteBody {
    user_ids: Vec<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    conversations: Option<String>,
    #[serde(default)]
    messages: Option<String>,
    #[serde(default)]
    calls: Option<String>,
    #[serde(default)]
    files: Option<bool>,
    #[serde(default)]
    new_channel_owner_id: Option<String>,
    #[serde(default)]
    new_call_owner_id: Option<String>,
}

/// POST /api/v2/users/delete
pub(super) async fn delete(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<DeleteBody>,
) -> HttpResult {
    let options = DeleteOptionsInput {
        user: body.user.unwrap_or_default(),
        conversations: body.conversations.unwrap_or_default(),
        messages: body.messages.unwrap_or_default(),
        calls: body.calls.unwrap_or_default(),
        files: body.files.unwrap_or_default(),
        new_channel_owner_id: body.new_channel_owner_id.unwrap_or_default(),
        new_call_owner_id: body.new_call_owner_id.unwrap_or_default(),
    };
    let request = LifecycleRequest::Delete {
        user_ids: body.user_ids,
        options,
        created_by_id: None,
        request_id: None,
    };
    many_users(&app, &caller, request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreBody {
    user_ids: Vec<String>,
}

/// POST /api/v2/users/restore: `{}` as Stream answers; the task runs as for gRPC.
pub(super) async fn restore(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<RestoreBody>,
) -> HttpResult {
    let request = LifecycleRequest::Restore {
        user_ids: body.user_ids,
        created_by_id: None,
        request_id: None,
    };
    app.enqueue_lifecycle(&caller, request).await?;
    Ok(Reply::empty())
}
