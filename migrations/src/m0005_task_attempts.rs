//! `tasks.attempts` changes meaning: it used to count every claim of a task; from this version on
//! it counts the claims since the task last made progress, and a task claimed five times in a row
//! without progress ends `failed` (a poison task no longer loops forever). Unfinished tasks start
//! the new count at zero, so that a long task that was merely handed over a few times during past
//! deploys is not mistaken for one that never progresses.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Attempts,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::update()
                    .table(Tasks::Table)
                    .value(Tasks::Attempts, 0)
                    .and_where(Expr::col(Tasks::FinishedAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The old meaning (every claim) cannot be recovered, and a lower count is harmless to it.
        Ok(())
    }
}
