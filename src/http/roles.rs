//! Roles, in Stream's shapes.
use axum::Extension;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::convert::nanos;
use super::error::{HttpResult, Reply};
use super::extract::JsonBody;
use crate::app::App;
use crate::domain::access::Caller;
use crate::domain::role::Role;

/// Stream's `Role`: `custom` is "not built in"; roster keeps no per-role scopes.
fn role(r: Role) -> Value {
    json!({
        "name": r.name,
        "custom": !r.builtin,
        "scopes": [],
        "created_at": nanos(r.created_at),
        "updated_at": nanos(r.created_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    name: String,
}

/// POST /api/v2/roles
pub(super) async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateBody>,
) -> HttpResult {
    let created = app.create_role(&caller, &body.name).await?;
    Ok(Reply::of(json!({ "role": role(created) })))
}

/// GET /api/v2/roles
pub(super) async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
) -> HttpResult {
    let roles: Vec<Value> = app
        .list_roles(&caller)
        .await?
        .into_iter()
        .map(role)
        .collect();
    Ok(Reply::of(json!({ "roles": roles })))
}

/// DELETE /api/v2/roles/{name}
pub(super) async fn delete(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> HttpResult {
    app.delete_role(&caller, &name).await?;
    Ok(Reply::empty())
}
