//! The pool as the store's single statements (those outside a write transaction) use it.
//!
//! Behind a pooler in transaction mode (PgBouncer; roster then runs with
//! `--database-statement-cache 0`), a statement outside a transaction is not safe as sqlx sends
//! it: it parses the unnamed statement and waits for the answer (one round trip, ending with the
//! connection idle), then binds and executes it (a second one). Between the two the pooler may
//! give the server connection to another client, whose own Parse replaces the unnamed statement;
//! our Bind then runs the other client's statement, or reaches another server connection that has
//! none. PostgreSQL logs `bind message supplies 4 parameters, but prepared statement "" requires
//! 5` or `unnamed prepared statement does not exist` and roster answers INTERNAL; and when the
//! parameter counts happen to match, the wrong statement runs. So there each such statement runs
//! in a transaction of its own, which keeps the server connection from Parse to Bind (two more
//! round trips, BEGIN and COMMIT). Directly on the database nothing changes.

use std::future::Future;
use std::pin::Pin;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 'a>>;

#[derive(Clone)]
pub(crate) struct Conn {
    db: DatabaseConnection,
    /// Each statement in a transaction of its own (behind a pooler in transaction mode).
    pinned: bool,
}

impl Conn {
    pub fn new(db: DatabaseConnection, pinned: bool) -> Self {
        Conn { db, pinned }
    }

    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db.begin().await
    }
}

/// Runs `run` in a transaction of its own (committed: a write outside `Store::write` stays).
async fn one_statement<T, F>(conn: &Conn, run: F) -> Result<T, DbErr>
where
    F: for<'c> FnOnce(&'c DatabaseTransaction) -> Boxed<'c, T>,
{
    let txn = conn.db.begin().await?;
    let out = run(&txn).await?;
    txn.commit().await?;
    Ok(out)
}

impl ConnectionTrait for Conn {
    fn get_database_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    fn execute_raw<'a, 'b>(&'a self, stmt: Statement) -> Boxed<'b, ExecResult>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            if !self.pinned {
                return self.db.execute_raw(stmt).await;
            }
            one_statement(self, |txn| Box::pin(txn.execute_raw(stmt))).await
        })
    }

    /// Simple-protocol text: one round trip, nothing to keep between messages.
    fn execute_unprepared<'a, 'b, 'c>(&'a self, sql: &'b str) -> Boxed<'c, ExecResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.db.execute_unprepared(sql)
    }

    fn query_one_raw<'a, 'b>(&'a self, stmt: Statement) -> Boxed<'b, Option<QueryResult>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            if !self.pinned {
                return self.db.query_one_raw(stmt).await;
            }
            one_statement(self, |txn| Box::pin(txn.query_one_raw(stmt))).await
        })
    }

    fn query_all_raw<'a, 'b>(&'a self, stmt: Statement) -> Boxed<'b, Vec<QueryResult>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            if !self.pinned {
                return self.db.query_all_raw(stmt).await;
            }
            one_statement(self, |txn| Box::pin(txn.query_all_raw(stmt))).await
        })
    }

    fn support_returning(&self) -> bool {
        self.db.support_returning()
    }
}
