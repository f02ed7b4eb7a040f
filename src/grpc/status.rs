//! The one place where roster's errors become gRPC codes and google.rpc details.
use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{BadRequest, ErrorDetails, ErrorInfo, FieldViolation, StatusExt};

use crate::error::{
    Error, Forbidden, MAX_DESCRIPTION_BYTES, MAX_FIELD_BYTES, MAX_MESSAGE_BYTES, MAX_VIOLATIONS,
    TokenRejection, bounded,
};

/// ErrorInfo domain of every roster error.
const DOMAIN: &str = "roster";

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let message = bounded(err.to_string(), MAX_MESSAGE_BYTES);
        let info = |code: Code, reason: &str, key: &str, value: String| {
            let metadata = HashMap::from([(key.to_owned(), value)]);
            let mut details = ErrorDetails::new();
            details.set_error_info(reason, DOMAIN, metadata);
            Status::with_error_details(code, message.clone(), details)
        };
        let bare = |code: Code, reason: &str| {
            let mut details = ErrorDetails::new();
            details.set_error_info(reason, DOMAIN, HashMap::new());
            Status::with_error_details(code, message.clone(), details)
        };
        match err {
            Error::InvalidArgument(violations) => {
                let violations: Vec<FieldViolation> = violations
                    .into_iter()
                    .take(MAX_VIOLATIONS)
                    .map(|v| {
                        FieldViolation::new(
                            bounded(v.field, MAX_FIELD_BYTES),
                            bounded(v.description, MAX_DESCRIPTION_BYTES),
                        )
                    })
                    .collect();
                Status::with_error_details_vec(
                    Code::InvalidArgument,
                    message,
                    [BadRequest::new(violations).into()],
                )
            }
            Error::UserNotFound(id) => info(Code::NotFound, "USER_NOT_FOUND", "user_id", id),
            Error::UserDeleted(id) => info(Code::FailedPrecondition, "USER_DELETED", "user_id", id),
            Error::UserNotDeleted(id) => {
                info(Code::FailedPrecondition, "USER_NOT_DELETED", "user_id", id)
            }
            Error::UserPruned(id) => info(Code::FailedPrecondition, "USER_PRUNED", "user_id", id),
            Error::RoleNotFound(name) => info(Code::NotFound, "ROLE_NOT_FOUND", "role", name),
            Error::RoleExists(name) => info(Code::AlreadyExists, "ROLE_EXISTS", "role", name),
            Error::RoleBuiltin(name) => {
                info(Code::FailedPrecondition, "ROLE_BUILTIN", "role", name)
            }
            Error::RoleInUse(name) => info(Code::FailedPrecondition, "ROLE_IN_USE", "role", name),
            Error::LimitExceeded(what) => {
                info(Code::ResourceExhausted, "LIMIT_EXCEEDED", "limit", what)
            }
            Error::TaskNotFound(id) => info(Code::NotFound, "TASK_NOT_FOUND", "task_id", id),
            Error::EventsPurged { purged_through, .. } => info(
                Code::OutOfRange,
                "EVENTS_PURGED",
                "purged_through",
                purged_through.to_string(),
            ),
            Error::TaskFinished(id) => {
                info(Code::FailedPrecondition, "TASK_FINISHED", "task_id", id)
            }
            Error::DeviceNotFound { device_id, .. } => {
                info(Code::NotFound, "DEVICE_NOT_FOUND", "device_id", device_id)
            }
            Error::UserTokensDisabled => bare(Code::FailedPrecondition, "USER_TOKENS_DISABLED"),
            Error::TokenRejected(rejection) => match rejection {
                TokenRejection::Invalid(_) => bare(Code::Unauthenticated, "TOKEN_INVALID"),
                TokenRejection::NotYetValid(_) => {
                    bare(Code::Unauthenticated, "TOKEN_NOT_YET_VALID")
                }
                TokenRejection::Expired(id) => {
                    info(Code::Unauthenticated, "TOKEN_EXPIRED", "user_id", id)
                }
                TokenRejection::Revoked(id) => {
                    info(Code::Unauthenticated, "TOKEN_REVOKED", "user_id", id)
                }
                TokenRejection::UnknownUser(id) => {
                    info(Code::Unauthenticated, "USER_NOT_FOUND", "user_id", id)
                }
            },
            Error::UserForbidden { user_id, reason } => {
                let reason = match reason {
                    Forbidden::Deactivated => "USER_DEACTIVATED",
                    Forbidden::Deleted => "USER_DELETED",
                    Forbidden::Banned => "USER_BANNED",
                };
                info(Code::PermissionDenied, reason, "user_id", user_id)
            }
            Error::MissingScope(scope) => info(
                Code::PermissionDenied,
                "MISSING_SCOPE",
                "scope",
                scope.to_string(),
            ),
            Error::Unavailable(cause) => {
                tracing::warn!(error = %crate::error::Chain(&cause), "database unavailable");
                let details = ErrorInfo::new("DATABASE_UNAVAILABLE", DOMAIN, HashMap::new());
                Status::with_error_details_vec(
                    Code::Unavailable,
                    "database unavailable, retry later",
                    [details.into()],
                )
            }
            Error::Database(cause) => {
                tracing::error!(error = %crate::error::Chain(&cause), "database error");
                Status::internal("internal error")
            }
            Error::ShuttingDown(why) => Status::unavailable(why),
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldViolation as Violation;

    #[test]
    fn echoed_input_is_bounded() {
        let key = "k".repeat(6000);
        let violations = (0..50)
            .map(|i| {
                Violation::new(
                    format!("users[{i}].unset.{key}"),
                    format!("{key} conflicts"),
                )
            })
            .collect();
        let status = Status::from(Error::InvalidArgument(violations));
        assert!(status.message().len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        let bad = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), MAX_VIOLATIONS);
        assert!(
            bad.field_violations[3]
                .field
                .starts_with("users[3].unset.kkk")
        );
        assert!(bad.field_violations[3].field.ends_with('…'));
        assert_eq!(bounded("short".into(), 10), "short");
        assert_eq!(bounded("ünïcödé".into(), 4), "ün…");
        assert_eq!(bounded("ünïcödé".into(), 5), "ünï…");
        let longest_id = format!("users[{}].id", "x".repeat(255));
        assert_eq!(bounded(longest_id.clone(), MAX_FIELD_BYTES), longest_id);
    }
}
