//! The feed's clock: one row holding the latest time an event was stamped with. A writer that
//! appends events on PostgreSQL moves it forward under the row's lock and stamps its events with
//! it, so the time and the sequence of events are drawn in one order and event times never step
//! back along the feed (see `store::events`). It starts at the newest event already written.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FeedClock {
    Table,
    Id,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FeedClock::Table)
                    .col(
                        ColumnDef::new(FeedClock::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(FeedClock::At).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO feed_clock (id, at) SELECT 1, COALESCE(MAX(at), 0) FROM user_events",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(FeedClock::Table).to_owned())
            .await
    }
}
