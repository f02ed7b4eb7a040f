//! Task status, as Stream's `GetTask` answers it.
use axum::Extension;
use axum::extract::{Path, State};

use super::convert;
use super::error::{HttpResult, Reply};
use crate::app::App;
use crate::domain::access::Caller;

/// GET /api/v2/tasks/{id}
pub(super) async fn get(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(task_id): Path<String>,
) -> HttpResult {
    let task = app.get_task(&caller, &task_id).await?;
    Ok(Reply::of(convert::task(task)))
}
