//! Durable tasks: one row per task (the user-visible resource, with its lease) and one row per
//! user item (its outcome). An item's effect and its "done" mark commit together.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Kind,
    Status,
    RequestId,
    Payload,
    Total,
    Done,
    ErrorType,
    ErrorDescription,
    CancelRequested,
    LeaseOwner,
    LeaseExpiresAt,
    NotBefore,
    Attempts,
    Version,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum TaskItems {
    Table,
    TaskId,
    Position,
    UserId,
    Status,
    Result,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    PrunedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(
                        ColumnDef::new(Tasks::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tasks::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(Tasks::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Tasks::RequestId)
                            .string_len(255)
                            .null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Tasks::Payload).json_binary().not_null())
                    .col(ColumnDef::new(Tasks::Total).integer().not_null())
                    .col(ColumnDef::new(Tasks::Done).integer().not_null())
                    .col(ColumnDef::new(Tasks::ErrorType).string_len(64).null())
                    .col(ColumnDef::new(Tasks::ErrorDescription).text().null())
                    .col(ColumnDef::new(Tasks::CancelRequested).boolean().not_null())
                    .col(ColumnDef::new(Tasks::LeaseOwner).string_len(64).null())
                    .col(ColumnDef::new(Tasks::LeaseExpiresAt).big_integer().null())
                    .col(ColumnDef::new(Tasks::NotBefore).big_integer().null())
                    .col(ColumnDef::new(Tasks::Attempts).integer().not_null())
                    .col(ColumnDef::new(Tasks::Version).big_integer().not_null())
                    .col(ColumnDef::new(Tasks::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Tasks::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Tasks::StartedAt).big_integer().null())
                    .col(ColumnDef::new(Tasks::FinishedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // The worker's claim: unfinished tasks, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_status_created_at")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // ListTasks (newest first) and retention purges.
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_created_at_id")
                    .table(Tasks::Table)
                    .col(Tasks::CreatedAt)
                    .col(Tasks::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskItems::Table)
                    .col(ColumnDef::new(TaskItems::TaskId).string_len(64).not_null())
                    .col(ColumnDef::new(TaskItems::Position).integer().not_null())
                    .col(ColumnDef::new(TaskItems::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(TaskItems::Status).string_len(16).not_null())
                    .col(ColumnDef::new(TaskItems::Result).json_binary().null())
                    .col(
                        ColumnDef::new(TaskItems::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TaskItems::TaskId)
                            .col(TaskItems::Position),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(TaskItems::Table, TaskItems::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruned users cannot be restored; remember that they were pruned.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(ColumnDef::new(Users::PrunedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::PrunedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(TaskItems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tasks::Table).to_owned())
            .await?;
        Ok(())
    }
}
