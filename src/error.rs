//! The one error type of roster. Domain rules, the store and the worker all return it; the gRPC
//! layer maps it to a `tonic::Status` in exactly one place (`grpc::status`).

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
    /// The database cannot be reached right now; the caller may retry.
    #[error("database unavailable")]
    Unavailable(#[source] sea_orm::DbErr),
    #[error("database error")]
    Database(#[source] sea_orm::DbErr),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A single field violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::Unavailable(err),
            DbErr::Query(sea_orm::RuntimeErr::SqlxError(ref e))
            | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(ref e))
                if is_connection_error(e) =>
            {
                Error::Unavailable(err)
            }
            other => Error::Database(other),
        }
    }
}

fn is_connection_error(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    matches!(
        e,
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_)
    )
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
