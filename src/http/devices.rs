//! Push devices, in Stream's shapes.
use axum::Extension;
use axum::extract::State;
use axum::http::Uri;
use serde::Deserialize;
use serde_json::{Value, json};

use super::convert::{self, UserRequest};
use super::error::{HttpError, HttpResult, Reply};
use super::extract::{JsonBody, required_param};
use crate::app::App;
use crate::domain::access::Caller;
use crate::domain::device::NewDevice;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    id: String,
    push_provider: String,
    #[serde(default)]
    push_provider_name: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user: Option<UserRequest>,
    #[serde(default)]
    voip_token: Option<bool>,
    /// Stream deduplicates pushes by it; roster keeps devices by id only.
    #[serde(default)]
    #[allow(dead_code)]
    hardware_id: Option<String>,
}

/// POST /api/v2/devices
pub(super) async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateBody>,
) -> HttpResult {
    let user_id = body
        .user_id
        .or(body.user.map(|u| u.id))
        .ok_or_else(|| HttpError::malformed("user_id", "is required server-side"))?;
    let device = NewDevice {
        id: body.id,
        push_provider: body.push_provider,
        push_provider_name: body.push_provider_name,
        voip: body.voip_token.unwrap_or_default(),
    };
    app.create_device(&caller, &user_id, device).await?;
    Ok(Reply::empty())
}

/// GET /api/v2/devices?user_id=
pub(super) async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> HttpResult {
    let user_id = required_param(&uri, "user_id")?;
    let devices: Vec<Value> = app
        .list_devices(&caller, &user_id)
        .await?
        .into_iter()
        .map(|d| convert::device(d, Some(&user_id)))
        .collect();
    Ok(Reply::of(json!({ "devices": devices })))
}

/// DELETE /api/v2/devices?id=&user_id=
pub(super) async fn delete(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> HttpResult {
    let id = required_param(&uri, "id")?;
    let user_id = required_param(&uri, "user_id")?;
    app.delete_device(&caller, &user_id, &id).await?;
    Ok(Reply::empty())
}
