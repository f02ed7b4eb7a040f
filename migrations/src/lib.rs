//! roster's schema, one migration a step. `roster migrate` and `roster serve` run them; tests run
//! the same migrator against every fresh database.
pub use sea_orm_migration::prelude::*;

mod m0001_users_and_roles;
mod m0002_tasks;
mod m0003_events;
mod m0004_moderation;
mod m0005_task_attempts;
mod m0006_feed_clock;

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
        ]
    }
}
