//! The change feed: one row per change, appended in the writing transaction. `sequence` comes from
//! an auto-increment, so it grows with allocation order; readers deal with commit order (see
//! `store::events`). `event_horizon` remembers how far retention has purged, so that a follower
//! asking for a purged position is told so instead of silently skipping events.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UserEvents {
    Table,
    Sequence,
    Kind,
    UserId,
    Actor,
    Caller,
    CreatedById,
    At,
    Snapshot,
    Role,
}

#[derive(DeriveIden)]
enum EventHorizon {
    Table,
    Id,
    PurgedThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserEvents::Table)
                    .col(
                        ColumnDef::new(UserEvents::Sequence)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(UserEvents::Kind).string_len(32).not_null())
                    .col(
                        ColumnDef::new(UserEvents::UserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(UserEvents::Actor).string_len(255).not_null())
                    .col(ColumnDef::new(UserEvents::Caller).string_len(255).null())
                    .col(
                        ColumnDef::new(UserEvents::CreatedById)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(UserEvents::At).big_integer().not_null())
                    .col(ColumnDef::new(UserEvents::Snapshot).json_binary().null())
                    .col(ColumnDef::new(UserEvents::Role).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        // Retention purges by time.
        manager
            .create_index(
                Index::create()
                    .name("idx_user_events_at")
                    .table(UserEvents::Table)
                    .col(UserEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventHorizon::Table)
                    .col(
                        ColumnDef::new(EventHorizon::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EventHorizon::PurgedThrough)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        let mut insert = Query::insert();
        insert
            .into_table(EventHorizon::Table)
            .columns([EventHorizon::Id, EventHorizon::PurgedThrough])
            .values_panic([1.into(), 0i64.into()]);
        manager.exec_stmt(insert).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventHorizon::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(UserEvents::Table).to_owned())
            .await?;
        Ok(())
    }
}
