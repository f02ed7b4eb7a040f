//! How database failures become roster's `Error`: a connection that cannot be had or was lost is
//! `Unavailable` (the caller may retry); anything else the database refused is `Database`.
use std::sync::Arc;

use crate::error::Error;

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::Unavailable(Arc::new(err)),
            DbErr::Query(sea_orm::RuntimeErr::SqlxError(ref e))
            | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(ref e))
                if is_connection_error(e) =>
            {
                Error::Unavailable(Arc::new(err))
            }
            other => Error::Database(Arc::new(other)),
        }
    }
}

fn is_connection_error(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => true,
        // PostgreSQL ends a session this way when it shuts down or restarts, and refuses one
        // while it starts: SQLSTATE class 08 (connection exception), 57P01 (admin shutdown),
        // 57P02 (crash shutdown), 57P03 (cannot connect now). The database is unavailable, not
        // the request wrong.
        E::Database(db) => db.code().is_some_and(|code| {
            code.len() == 5
                && (code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03"))
        }),
        _ => false,
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}
