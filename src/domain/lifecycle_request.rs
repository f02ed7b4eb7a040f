//! Lifecycle requests (deactivate, reactivate, delete, restore) as a front door receives them,
//! and the rules that turn one into a task to enqueue.
use super::ids::check_id;
use super::lifecycle::{DeleteOptionsInput, check_ids};
use super::task::{LifecycleV1, NewTask, TaskKind, TaskPayload};
use crate::error::{Error, Result};

/// Longest idempotency key a caller may send.
pub const MAX_REQUEST_ID_CHARS: usize = 255;

/// What a caller asked for, before any rule. `created_by_id` is the user who acted (it lands in
/// the feed and the task payload); `request_id` makes a repeated request return the first task.
#[derive(Debug, Clone)]
pub enum LifecycleRequest {
    DeactivateOne {
        user_id: String,
        mark_messages_deleted: bool,
        created_by_id: Option<String>,
    },
    DeactivateMany {
        user_ids: Vec<String>,
        mark_messages_deleted: bool,
        mark_channels_deleted: bool,
        created_by_id: Option<String>,
        request_id: Option<String>,
    },
    ReactivateOne {
        user_id: String,
        restore_messages: bool,
        created_by_id: Option<String>,
        /// A new name set together with the reactivation.
        name: Option<String>,
    },
    ReactivateMany {
        user_ids: Vec<String>,
        restore_messages: bool,
        restore_channels: bool,
        created_by_id: Option<String>,
        request_id: Option<String>,
    },
    Delete {
        user_ids: Vec<String>,
        options: DeleteOptionsInput,
        created_by_id: Option<String>,
        request_id: Option<String>,
    },
    Restore {
        user_ids: Vec<String>,
        created_by_id: Option<String>,
        request_id: Option<String>,
    },
}

impl LifecycleRequest {
    /// Whether this is a one-user call (it answers with the user, and acts at once).
    fn is_single(&self) -> bool {
        matches!(
            self,
            LifecycleRequest::DeactivateOne { .. } | LifecycleRequest::ReactivateOne { .. }
        )
    }

    /// Applies the rules; `caller` is the authenticated calling service, if any.
    pub fn check(self, caller: Option<String>) -> Result<NewTask> {
        use LifecycleRequest as R;
        let single = self.is_single();
        let (kind, user_ids, payload, request_id) = match self {
            R::DeactivateOne {
                user_id,
                mark_messages_deleted,
                created_by_id,
            } => (
                TaskKind::DeactivateUsers,
                vec![user_id],
                LifecycleV1 {
                    mark_messages_deleted,
                    created_by_id,
                    ..Default::default()
                },
                None,
            ),
            R::DeactivateMany {
                user_ids,
                mark_messages_deleted,
                mark_channels_deleted,
                created_by_id,
                request_id,
            } => (
                TaskKind::DeactivateUsers,
                user_ids,
                LifecycleV1 {
                    mark_messages_deleted,
                    mark_channels_deleted,
                    created_by_id,
                    ..Default::default()
                },
                request_id,
            ),
            R::ReactivateOne {
                user_id,
                restore_messages,
                created_by_id,
                name,
            } => {
                if name.as_deref().is_some_and(|n| n.contains('\0')) {
                    return Err(Error::invalid("name", "must not contain NUL"));
                }
                (
                    TaskKind::ReactivateUsers,
                    vec![user_id],
                    LifecycleV1 {
                        restore_messages,
                        created_by_id,
                        name,
                        ..Default::default()
                    },
                    None,
                )
            }
            R::ReactivateMany {
                user_ids,
                restore_messages,
                restore_channels,
                created_by_id,
                request_id,
            } => (
                TaskKind::ReactivateUsers,
                user_ids,
                LifecycleV1 {
                    restore_messages,
                    restore_channels,
                    created_by_id,
                    ..Default::default()
                },
                request_id,
            ),
            R::Delete {
                user_ids,
                options,
                created_by_id,
                request_id,
            } => {
                let delete = options.parse()?;
                (
                    TaskKind::DeleteUsers,
                    user_ids,
                    LifecycleV1 {
                        delete: Some(delete),
                        created_by_id,
                        ..Default::default()
                    },
                    request_id,
                )
            }
            R::Restore {
                user_ids,
                created_by_id,
                request_id,
            } => (
                TaskKind::RestoreUsers,
                user_ids,
                LifecycleV1 {
                    created_by_id,
                    ..Default::default()
                },
                request_id,
            ),
        };
        let task = task(
            kind,
            user_ids,
            LifecycleV1 { caller, ..payload },
            request_id,
        );
        if single {
            task.map_err(single_user)
        } else {
            task
        }
    }
}

fn task(
    kind: TaskKind,
    user_ids: Vec<String>,
    payload: LifecycleV1,
    request_id: Option<String>,
) -> Result<NewTask> {
    check_ids(&user_ids)?;
    // Who acted is a user id, like `banned_by_id`; it lands in the feed and the task payload.
    if let Some(id) = &payload.created_by_id {
        check_id("created_by_id", id)?;
    }
    check_request_id(request_id.as_deref())?;
    Ok(NewTask {
        kind,
        user_ids,
        payload: TaskPayload::V1(payload),
        request_id,
    })
}

/// An idempotency key: 1 to 255 characters, without NUL.
pub fn check_request_id(id: Option<&str>) -> Result<()> {
    match id {
        Some(id)
            if id.is_empty() || id.chars().count() > MAX_REQUEST_ID_CHARS || id.contains('\0') =>
        {
            Err(Error::invalid(
                "request_id",
                format!("must be 1 to {MAX_REQUEST_ID_CHARS} characters, without NUL"),
            ))
        }
        _ => Ok(()),
    }
}

/// Single-user calls name their field `user_id`, not `user_ids[0]`.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: Error) -> Vec<String> {
        match err {
            Error::InvalidArgument(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("not invalid argument: {other}"),
        }
    }

    #[test]
    fn one_user_calls_name_user_id_and_many_user_calls_user_ids() {
        let one = LifecycleRequest::DeactivateOne {
            user_id: "bad id".into(),
            mark_messages_deleted: false,
            created_by_id: None,
        };
        assert_eq!(fields(one.check(None).unwrap_err()), ["user_id"]);
        let many = LifecycleRequest::Restore {
            user_ids: vec!["ok".into(), "bad id".into()],
            created_by_id: None,
            request_id: None,
        };
        assert_eq!(fields(many.check(None).unwrap_err()), ["user_ids[1]"]);
    }

    #[test]
    fn request_ids_are_1_to_255_characters_without_nul() {
        let restore = |request_id: &str| LifecycleRequest::Restore {
            user_ids: vec!["u1".into()],
            created_by_id: None,
            request_id: Some(request_id.into()),
        };
        for bad in ["", "a\0b", &"é".repeat(256)] {
            assert_eq!(
                fields(restore(bad).check(None).unwrap_err()),
                ["request_id"]
            );
        }
        let ok = restore(&"é".repeat(255))
            .check(Some("feeds".into()))
            .unwrap();
        assert_eq!(ok.kind, TaskKind::RestoreUsers);
        let TaskPayload::V1(payload) = ok.payload;
        assert_eq!(
            payload.caller.as_deref(),
            Some("feeds"),
            "the caller is the feed's actor"
        );
    }

    #[test]
    fn delete_options_and_names_are_checked() {
        let delete = LifecycleRequest::Delete {
            user_ids: vec!["u1".into()],
            options: DeleteOptionsInput {
                user: "hard".into(),
                ..Default::default()
            },
            created_by_id: Some("bad id".into()),
            request_id: None,
        };
        assert_eq!(
            fields(delete.check(None).unwrap_err()),
            ["messages", "conversations"]
        );
        let reactivate = LifecycleRequest::ReactivateOne {
            user_id: "u1".into(),
            restore_messages: false,
            created_by_id: None,
            name: Some("a\0".into()),
        };
        assert_eq!(fields(reactivate.check(None).unwrap_err()), ["name"]);
    }
}
