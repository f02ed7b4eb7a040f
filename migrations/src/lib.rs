//! roster's schema, one migration a step. `roster migrate` and `roster serve` run them; tests run
//! the same migrator against every fresh database.
pub use sea_orm_migration::prelude::*;

mod m0001_users_and_roles;
mod m0002_tasks;
mod m0003_events;
mod m0004_moderation;
mod m0005_task_attempts;
mod m0006_feed_clock;
mod m0007_feed_stamp;

/// Advisory lock key every transaction that appends to the change feed on PostgreSQL holds
/// (shared) from just before it appends until it ends ("feed"); see `store::events`.
pub const FEED_WRITERS_LOCK: i64 = 0x0066_6565_6564;
/// Advisory lock key `roster_feed_stamp` holds (exclusive, for microseconds) while it draws an
/// append's time and sequences ("stamp"); see m0007.
pub const FEED_STAMP_LOCK: i64 = 0x0073_7461_6d70;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_users_and_roles::Migration),
            Box::new(m0002_tasks::Migration),
            Box::new(m0003_events::Migration),
            Box::new(m0004_moderation::Migration),
            Box::new(m0005_task_attempts::Migration),
            Box::new(m0006_feed_clock::Migration),
            Box::new(m0007_feed_stamp::Migration),
        ]
    }
}
