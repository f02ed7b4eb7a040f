//! The schema: replicas starting together migrate once, and a binary refuses a newer schema.

use roster::pb::ListRolesRequest;
use roster::store::Store;
use sea_orm::{ConnectionTrait, Database};
use std::sync::Arc;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once() {
    let db = Arc::new(TestDb::create().await);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { Store::migrate(&url).await })
        })
        .collect();
    for run in runs {
        run.await
            .expect("migration task")
            .expect("every concurrent migrate succeeds");
    }
    // Migrating again is a no-op.
    Store::migrate(db.url()).await.expect("second migrate");

    let srv = Launch::new().on(db).start().await;
    let roles = srv
        .roles()
        .list_roles(ListRolesRequest {})
        .await
        .expect("ListRoles")
        .into_inner();
    assert_eq!(
        roles.roles.len(),
        6,
        "built-in roles seeded exactly once: {:?}",
        roles.roles
    );
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let db = TestDb::create().await;
    Store::migrate(db.url()).await.expect("migrate");
    let conn = Database::connect(db.url()).await.expect("connect");
    conn.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m9999_from_the_future', 0)",
    )
    .await
    .expect("record a migration this binary does not know");
    conn.close().await.expect("close");

    let err = Store::migrate(db.url())
        .await
        .expect_err("a newer schema must be refused");
    assert!(err.to_string().contains("newer than this roster"), "{err}");
}
