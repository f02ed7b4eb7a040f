//! The one error type of roster. Domain rules, the store and the worker all return it; each front
//! door maps it to its own wire error in exactly one place (`grpc::status`, `http::error`).

/// One rejected input: where (`users[u1].role`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// An error and every cause behind it, for logs: `database error: error returned from database:
/// relation "users" does not exist`. A cause whose text its parent already shows is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(next) = cause {
            let text = next.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            cause = next.source();
        }
        Ok(())
    }
}

/// What a failure underneath roster (the database driver) said, kept for logs. Shared, so that one
/// failed read can answer every caller that waited on it.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; nothing was written.
    #[error("invalid argument: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("user {0} not found")]
    UserNotFound(String),
    #[error("user {0} is deleted")]
    UserDeleted(String),
    #[error("user {0} is not deleted")]
    UserNotDeleted(String),
    #[error("user {0} was pruned or hard-deleted and cannot be restored")]
    UserPruned(String),
    #[error("role {0} not found")]
    RoleNotFound(String),
    #[error("role {0} already exists")]
    RoleExists(String),
    #[error("role {0} is built in")]
    RoleBuiltin(String),
    #[error("role {0} is held by a user")]
    RoleInUse(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("events up to {purged_through} were purged; cannot resume after {after}")]
    EventsPurged { after: i64, purged_through: i64 },
    #[error("task {0} has already finished")]
    TaskFinished(String),
    #[error("device {device_id:?} of user {user_id} not found")]
    DeviceNotFound { user_id: String, device_id: String },
    /// No user-token secret is configured, so tokens can be neither issued nor verified.
    #[error(
        "user tokens are not configured on this server (set --user-token-secret or ROSTER_USER_TOKEN_SECRET[_FILE])"
    )]
    UserTokensDisabled,
    /// The token does not prove who the caller is.
    #[error("{0}")]
    TokenRejected(TokenRejection),
    /// The token is good, but its user may not act.
    #[error("user {user_id} may not act: {reason}")]
    UserForbidden { user_id: String, reason: Forbidden },
    /// The caller's token does not grant the scope this call needs.
    #[error("the caller may not do this: its token lacks the scope {0}")]
    MissingScope(&'static str),
    /// The database cannot be reached right now; the caller may retry.
    #[error("database unavailable")]
    Unavailable(#[source] Cause),
    #[error("database error")]
    Database(#[source] Cause),
    /// roster is shutting down: a stream ends with this, and the caller resumes elsewhere.
    #[error("{0}")]
    ShuttingDown(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a user token does not authenticate anyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a JWT, not HS256, not signed with the configured secret, without `user_id`, or with a
    /// time claim that is not a NumericDate. The text is roster's own, never a library's.
    #[error("token is invalid: {0}")]
    Invalid(String),
    /// `nbf` or `iat` is later than now plus the leeway.
    #[error("{0}")]
    NotYetValid(&'static str),
    #[error("token of user {0} has expired")]
    Expired(String),
    /// Issued before the user's `revoke_tokens_issued_before` (or without `iat` while that is set).
    #[error("token of user {0} was revoked")]
    Revoked(String),
    /// A well-signed token for a user roster does not know (never created, or hard-deleted).
    #[error("token names user {0}, which does not exist")]
    UnknownUser(String),
}

/// Why a user with a good token may not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("the user is deactivated")]
    Deactivated,
    #[error("the user is deleted")]
    Deleted,
    #[error("the user is banned")]
    Banned,
}

impl Error {
    /// A single field violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

/// How much of a caller's input an error answer echoes, on either door. gRPC error details travel
/// in response headers (trailers), which clients cap (16 KiB is common):
/// an answer over the cap reaches the caller as a protocol error instead of the status. Echoed
/// input (a 6 KiB key in a field path) is therefore shortened, and the violations are capped.
/// Budgets are in bytes: worst case about 12 KiB once percent- and base64-encoded. A field path
/// naming a user by its longest id (`users[<255 characters>].id`) fits whole.
pub const MAX_MESSAGE_BYTES: usize = 1024;
pub const MAX_FIELD_BYTES: usize = 320;
pub const MAX_DESCRIPTION_BYTES: usize = 256;
pub const MAX_VIOLATIONS: usize = 10;

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut. Doors
/// bound what they echo of a caller's input (a 6 KiB key in a field path) with it.
pub fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn a_logged_error_names_its_causes_once_each() {
        let driver = std::io::Error::other("relation \"users\" does not exist");
        let err = Error::Database(std::sync::Arc::new(driver));
        assert_eq!(err.to_string(), "database error");
        assert_eq!(
            Chain(&err).to_string(),
            "database error: relation \"users\" does not exist"
        );
        let io = std::io::Error::other("too many open files");
        assert_eq!(Chain(&io).to_string(), "too many open files");
    }
}
