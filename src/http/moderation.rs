//! Bans and blocks, in Stream's shapes. roster bans app-wide: a channel ban is refused.
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use axum::Extension;
use axum::extract::State;
use axum::http::Uri;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::convert::{self, UserRequest, nanos};
use super::error::{HttpError, HttpResult, Reply};
use super::extract::{JsonBody, json_param, query_param, required_param};
use crate::app::{App, BlockOf};
use crate::domain::access::Caller;
use crate::domain::moderation::BanRequest;
use crate::domain::presence::AsOf;
use crate::domain::user::User;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BanBody {
    target_user_id: String,
    #[serde(default)]
    banned_by_id: Option<String>,
    #[serde(default)]
    banned_by: Option<UserRequest>,
    /// Minutes; absent or 0: no expiry.
    #[serde(default)]
    timeout: Option<u32>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    shadow: Option<bool>,
    #[serde(default)]
    channel_cid: Option<String>,
    #[serde(default)]
    ip_ban: Option<bool>,
    #[serde(default)]
    delete_messages: Option<String>,
}

/// POST /api/v2/moderation/ban
pub(super) async fn ban(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<BanBody>,
) -> HttpResult {
    if body.channel_cid.is_some() {
        return Err(HttpError::malformed(
            "channel_cid",
            "roster bans app-wide; channel bans belong to the chat product",
        ));
    }
    if body.ip_ban == Some(true) {
        return Err(HttpError::malformed(
            "ip_ban",
            "roster does not ban addresses",
        ));
    }
    if body.delete_messages.is_some() {
        return Err(HttpError::malformed(
            "delete_messages",
            "messages belong to the chat product; roster does not delete them",
        ));
    }
    let request = BanRequest {
        target_user_id: body.target_user_id,
        timeout_minutes: body.timeout.unwrap_or_default(),
        reason: body.reason,
        shadow: body.shadow.unwrap_or_default(),
        banned_by_id: body.banned_by_id.or(body.banned_by.map(|u| u.id)),
    };
    app.ban_user(&caller, request).await?;
    Ok(Reply::empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnbanBody {
    #[serde(default)]
    unbanned_by_id: Option<String>,
    #[serde(default)]
    unbanned_by: Option<UserRequest>,
}

/// POST /api/v2/moderation/unban?target_user_id=&created_by=
pub(super) async fn unban(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    JsonBody(body): JsonBody<UnbanBody>,
) -> HttpResult {
    if query_param(&uri, "channel_cid").is_some_and(|c| !c.is_empty()) {
        return Err(HttpError::malformed(
            "channel_cid",
            "roster bans app-wide; channel bans belong to the chat product",
        ));
    }
    let target = required_param(&uri, "target_user_id")?;
    let created_by_id = body
        .unbanned_by_id
        .or(body.unbanned_by.map(|u| u.id))
        .or(query_param(&uri, "created_by"));
    app.unban_user(&caller, &target, created_by_id).await?;
    Ok(Reply::empty())
}

/// Stream's `QueryBannedUsersPayload`. roster lists app-wide bans, most recent first: the filter
/// must be empty and the sort absent (both are accepted so that the SDKs' defaults pass).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct BannedPayload {
    #[serde(default)]
    filter_conditions: Option<Map<String, Value>>,
    #[serde(default)]
    sort: Option<Vec<Value>>,
    /// Bounds on when bans were made; roster does not filter bans by them (refused when set).
    #[serde(default)]
    created_at_after: Option<Value>,
    #[serde(default)]
    created_at_after_or_equal: Option<Value>,
    #[serde(default)]
    created_at_before: Option<Value>,
    #[serde(default)]
    created_at_before_or_equal: Option<Value>,
    #[serde(default)]
    exclude_expired_bans: Option<bool>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    user_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<Value>,
}

/// GET /api/v2/chat/query_banned_users?payload=<JSON>
pub(super) async fn query_banned(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> HttpResult {
    let payload: BannedPayload = json_param(&uri, "payload")?;
    if payload.filter_conditions.is_some_and(|f| !f.is_empty()) {
        return Err(HttpError::malformed(
            "payload.filter_conditions",
            "roster lists every app-wide ban; filter with QueryUsers (`banned: true`) instead",
        ));
    }
    let bounds = [
        ("created_at_after", &payload.created_at_after),
        (
            "created_at_after_or_equal",
            &payload.created_at_after_or_equal,
        ),
        ("created_at_before", &payload.created_at_before),
        (
            "created_at_before_or_equal",
            &payload.created_at_before_or_equal,
        ),
    ];
    if let Some((name, _)) = bounds.iter().find(|(_, v)| v.is_some()) {
        return Err(HttpError::malformed(
            format!("payload.{name}"),
            "roster lists every app-wide ban; it does not filter them by time",
        ));
    }
    if payload.sort.is_some_and(|s| !s.is_empty()) {
        return Err(HttpError::malformed(
            "payload.sort",
            "bans are listed most recent first",
        ));
    }
    if payload.offset.is_some_and(|o| o > 0) {
        return Err(HttpError::malformed(
            "payload.offset",
            "roster pages bans by token (gRPC QueryBannedUsers), not by offset",
        ));
    }
    let page = app
        .query_banned_users(
            &caller,
            payload.exclude_expired_bans.unwrap_or_default(),
            payload.limit.unwrap_or_default(),
            "",
        )
        .await?;
    let as_of = app.as_of_now();
    // Who banned, as whole users (BanResponse.banned_by is a UserResponse); left out when gone.
    let mut banners = BTreeMap::new();
    for id in page
        .users
        .iter()
        .filter_map(|u| u.ban.as_ref()?.banned_by_id.clone())
    {
        if let Entry::Vacant(slot) = banners.entry(id) {
            let banner = app.get_user(&caller, slot.key(), false).await.ok();
            slot.insert(banner.map(|u| convert::user(u, as_of)));
        }
    }
    let bans: Vec<Value> = page
        .users
        .into_iter()
        .filter_map(|u| ban_of(u, as_of, &banners))
        .collect();
    Ok(Reply::of(json!({ "bans": bans })))
}

/// Stream's `BanResponse` for a banned user.
fn ban_of(user: User, as_of: AsOf, banners: &BTreeMap<String, Option<Value>>) -> Option<Value> {
    let ban = user.ban.clone()?;
    let mut out = json!({
        "created_at": nanos(ban.banned_at),
        "shadow": ban.shadow,
    });
    if let Some(expires) = ban.expires {
        out["expires"] = nanos(expires);
    }
    if let Some(reason) = ban.reason {
        out["reason"] = Value::String(reason);
    }
    if let Some(Some(by)) = ban.banned_by_id.and_then(|id| banners.get(&id).cloned()) {
        out["banned_by"] = by;
    }
    out["user"] = convert::user(user, as_of);
    Some(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BlockBody {
    blocked_user_id: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user: Option<UserRequest>,
}

impl BlockBody {
    /// The blocking user: `user_id`, else `user.id` (server-side calls must name one).
    fn blocker(&mut self) -> Result<String, HttpError> {
        self.user_id
            .take()
            .or(self.user.take().map(|u| u.id))
            .ok_or_else(|| HttpError::malformed("user_id", "is required server-side"))
    }
}

/// POST /api/v2/users/block
pub(super) async fn block(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(mut body): JsonBody<BlockBody>,
) -> HttpResult {
    let user_id = body.blocker()?;
    let BlockOf { block, .. } = app
        .block_user(&caller, &user_id, &body.blocked_user_id)
        .await?;
    Ok(Reply::of(json!({
        "blocked_by_user_id": block.user_id,
        "blocked_user_id": block.blocked_user_id,
        "created_at": nanos(block.created_at),
    })))
}

/// POST /api/v2/users/unblock
pub(super) async fn unblock(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(mut body): JsonBody<BlockBody>,
) -> HttpResult {
    let user_id = body.blocker()?;
    app.unblock_user(&caller, &user_id, &body.blocked_user_id)
        .await?;
    Ok(Reply::empty())
}

/// GET /api/v2/users/block?user_id=
pub(super) async fn blocked(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> HttpResult {
    let user_id = required_param(&uri, "user_id")?;
    let blocks = app.blocked_users(&caller, &user_id).await?;
    // The blocker as the answers show it (`null` if it is deleted).
    let blocker = app.get_user(&caller, &user_id, false).await.ok();
    let as_of = app.as_of_now();
    let blocker = blocker.map_or(Value::Null, |u| convert::user(u, as_of));
    let blocks: Vec<Value> = blocks
        .into_iter()
        .map(
            |BlockOf {
                 block,
                 blocked_user,
             }| {
                json!({
                    "user_id": block.user_id,
                    "user": blocker,
                    "blocked_user_id": block.blocked_user_id,
                    "blocked_user": blocked_user.map_or(Value::Null, |u| convert::user(u, as_of)),
                    "created_at": nanos(block.created_at),
                })
            },
        )
        .collect();
    Ok(Reply::of(json!({ "blocks": blocks })))
}
