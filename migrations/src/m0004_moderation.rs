//! Moderation, blocks and devices.
//!
//! A ban is a handful of columns on the user (a user has at most one ban in force; banning again
//! replaces it). It stays on the row after `ban_expires` (QueryBannedUsers can still list it);
//! whether it is in force is decided against the clock when the user is read, never stored.
//!
//! Blocks and devices are rows of their own, keyed by the user. Their foreign keys cascade, so a
//! hard-deleted user takes its devices, the blocks it made and the blocks that name it along,
//! even if a caller other than the task worker ever removes a user row.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    BannedAt,
    BanExpires,
    BanReason,
    ShadowBanned,
    BannedById,
}

#[derive(DeriveIden)]
enum UserBlocks {
    Table,
    UserId,
    BlockedUserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    UserId,
    Id,
    PushProvider,
    PushProviderName,
    Voip,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let columns = [
            ColumnDef::new(Users::BannedAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Users::BanExpires)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Users::BanReason).text().null().to_owned(),
            ColumnDef::new(Users::ShadowBanned)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(Users::BannedById)
                .string_len(255)
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // QueryBannedUsers: newest ban first, id as tie-break.
        manager
            .create_index(
                Index::create()
                    .name("idx_users_banned_at_id")
                    .table(Users::Table)
                    .col(Users::BannedAt)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserBlocks::Table)
                    .col(
                        ColumnDef::new(UserBlocks::UserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserBlocks::BlockedUserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserBlocks::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(UserBlocks::UserId)
                            .col(UserBlocks::BlockedUserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_blocks_user")
                            .from(UserBlocks::Table, UserBlocks::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_blocks_blocked_user")
                            .from(UserBlocks::Table, UserBlocks::BlockedUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Removing every block that names a user (hard deletion) without a full scan.
        manager
            .create_index(
                Index::create()
                    .name("idx_user_blocks_blocked_user_id")
                    .table(UserBlocks::Table)
                    .col(UserBlocks::BlockedUserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(ColumnDef::new(Devices::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(Devices::Id).string_len(255).not_null())
                    .col(
                        ColumnDef::new(Devices::PushProvider)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Devices::PushProviderName)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(Devices::Voip).boolean().not_null())
                    .col(ColumnDef::new(Devices::CreatedAt).big_integer().not_null())
                    .primary_key(Index::create().col(Devices::UserId).col(Devices::Id))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_devices_user")
                            .from(Devices::Table, Devices::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Devices::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(UserBlocks::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_banned_at_id")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Users::BannedById,
            Users::ShadowBanned,
            Users::BanReason,
            Users::BanExpires,
            Users::BannedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
