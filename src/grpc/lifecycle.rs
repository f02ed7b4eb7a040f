//! Lifecycle requests (deactivate, reactivate, delete, restore) as tasks to enqueue.
use crate::domain::ids::check_id;
use crate::domain::lifecycle::{DeleteOptionsInput, check_ids};
use crate::domain::task::{LifecycleV1, NewTask, TaskKind, TaskPayload};
use crate::error::{Error, Result};
use crate::pb;

const MAX_REQUEST_ID_CHARS: usize = 255;

fn request_id(id: Option<String>) -> Result<Option<String>> {
    match id {
        Some(id)
            if id.is_empty() || id.chars().count() > MAX_REQUEST_ID_CHARS || id.contains('\0') =>
        {
            Err(Error::invalid(
                "request_id",
                format!("must be 1 to {MAX_REQUEST_ID_CHARS} characters, without NUL"),
            ))
        }
        other => Ok(other),
    }
}

fn task(
    kind: TaskKind,
    user_ids: Vec<String>,
    payload: LifecycleV1,
    request: Option<String>,
) -> Result<NewTask> {
    check_ids(&user_ids)?;
    // Who acted is a user id, like `banned_by_id`; it lands in the feed and the task payload.
    if let Some(id) = &payload.created_by_id {
        check_id("created_by_id", id)?;
    }
    Ok(NewTask {
        kind,
        user_ids,
        payload: TaskPayload::V1(payload),
        request_id: request_id(request)?,
    })
}

pub fn deactivate_one(caller: Option<String>, r: pb::DeactivateUserRequest) -> Result<NewTask> {
    let payload = LifecycleV1 {
        mark_messages_deleted: r.mark_messages_deleted,
        created_by_id: r.created_by_id,
        caller,
        ..Default::default()
    };
    task(TaskKind::DeactivateUsers, vec![r.user_id], payload, None).map_err(single_user)
}

pub fn deactivate_many(caller: Option<String>, r: pb::DeactivateUsersRequest) -> Result<NewTask> {
    let payload = LifecycleV1 {
        mark_messages_deleted: r.mark_messages_deleted,
        mark_channels_deleted: r.mark_channels_deleted,
        created_by_id: r.created_by_id,
        caller,
        ..Default::default()
    };
    task(TaskKind::DeactivateUsers, r.user_ids, payload, r.request_id)
}

pub fn reactivate_one(caller: Option<String>, r: pb::ReactivateUserRequest) -> Result<NewTask> {
    if r.name.as_deref().is_some_and(|n| n.contains('\0')) {
        return Err(Error::invalid("name", "must not contain NUL"));
    }
    let payload = LifecycleV1 {
        restore_messages: r.restore_messages,
        created_by_id: r.created_by_id,
        caller,
        name: r.name,
        ..Default::default()
    };
    task(TaskKind::ReactivateUsers, vec![r.user_id], payload, None).map_err(single_user)
}

pub fn reactivate_many(caller: Option<String>, r: pb::ReactivateUsersRequest) -> Result<NewTask> {
    let payload = LifecycleV1 {
        restore_messages: r.restore_messages,
        restore_channels: r.restore_channels,
        created_by_id: r.created_by_id,
        caller,
        ..Default::default()
    };
    task(TaskKind::ReactivateUsers, r.user_ids, payload, r.request_id)
}

pub fn delete_many(caller: Option<String>, r: pb::DeleteUsersRequest) -> Result<NewTask> {
    let delete = DeleteOptionsInput {
        user: r.user,
        conversations: r.conversations,
        messages: r.messages,
        calls: r.calls,
        files: r.files,
        new_channel_owner_id: r.new_channel_owner_id.unwrap_or_default(),
        new_call_owner_id: r.new_call_owner_id.unwrap_or_default(),
    }
    .parse()?;
    let payload = LifecycleV1 {
        delete: Some(delete),
        created_by_id: r.created_by_id,
        caller,
        ..Default::default()
    };
    task(TaskKind::DeleteUsers, r.user_ids, payload, r.request_id)
}

pub fn restore_many(caller: Option<String>, r: pb::RestoreUsersRequest) -> Result<NewTask> {
    let payload = LifecycleV1 {
        created_by_id: r.created_by_id,
        caller,
        ..Default::default()
    };
    task(TaskKind::RestoreUsers, r.user_ids, payload, r.request_id)
}

/// Single-user RPCs name their field `user_id`, not `user_ids[0]`.
fn single_user(err: Error) -> Error {
    match err {
        Error::InvalidArgument(mut violations) => {
            for v in &mut violations {
                if v.field.starts_with("user_ids") {
                    v.field = "user_id".into();
                }
            }
            Error::InvalidArgument(violations)
        }
        other => other,
    }
}
