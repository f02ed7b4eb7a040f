//! Fresh stores for unit tests: SQLite in a temporary directory always, and a PostgreSQL
//! database of its own (created for the test and dropped after it) when `ROSTER_TEST_DB=postgres`,
//! on the server of `ROSTER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{ConnectionTrait, Database};

use super::Store;
use crate::domain::time::Clock;

/// Runs `body` on a fresh, migrated SQLite store, then on a fresh PostgreSQL store when enabled
/// (dropping its database even when the body fails). Each store reads time from the clock it is
/// given with, which the body may advance.
pub(crate) async fn on_every_store<F, Fut>(body: F)
where
    F: Fn(Store, Clock) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let clock = Clock::default();
    body(open(&url, &clock).await, clock).await;
    if !matches!(
        std::env::var("ROSTER_TEST_DB").as_deref(),
        Ok("postgres" | "postgresql")
    ) {
        return;
    }
    let admin_url = std::env::var("ROSTER_TEST_PG_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let server = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(server, _)| server);
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "roster_store_unit_{}_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    let admin = Database::connect(&admin_url).await.expect("postgres");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let clock = Clock::default();
    let store = open(&format!("{server}/{name}"), &clock).await;
    let result = tokio::spawn(body(store, clock)).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop database");
    let _ = admin.close().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn open(url: &str, clock: &Clock) -> Store {
    Store::migrate(url).await.expect("migrate");
    Store::connect(url, super::pools::SPLIT_FROM)
        .await
        .expect("connect")
        .with_clock(clock.clone())
}

/// Sets a task's attempt count, as if it had been claimed that many times without progress.
pub(crate) async fn set_task_attempts(store: &Store, task_id: &str, attempts: i32) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    super::entities::task::Entity::update_many()
        .col_expr(
            super::entities::task::Column::Attempts,
            Expr::value(attempts),
        )
        .filter(super::entities::task::Column::Id.eq(task_id.to_owned()))
        .exec(store.conn())
        .await
        .expect("set attempts");
}

/// Sets a task's kind to `kind`, as a newer binary might have enqueued it.
pub(crate) async fn set_task_kind(store: &Store, task_id: &str, kind: &str) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    super::entities::task::Entity::update_many()
        .col_expr(super::entities::task::Column::Kind, Expr::value(kind))
        .filter(super::entities::task::Column::Id.eq(task_id.to_owned()))
        .exec(store.conn())
        .await
        .expect("set kind");
}
