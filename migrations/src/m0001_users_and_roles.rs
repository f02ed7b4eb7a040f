//! Users and roles. Instants are stored as microseconds since the Unix epoch (BIGINT) so that they
//! compare, sort and paginate identically on SQLite and PostgreSQL. JSON documents are `jsonb` on
//! PostgreSQL (comparable, indexable) and JSON text on SQLite.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Image,
    Role,
    Custom,
    Language,
    Invisible,
    Teams,
    TeamsRole,
    PrivacySettings,
    PushNotifications,
    CreatedAt,
    UpdatedAt,
    DeactivatedAt,
    DeletedAt,
    LastActive,
    RevokeTokensIssuedBefore,
    AvgResponseTime,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Builtin,
    ChannelLevel,
    CreatedAt,
}

/// Built-in roles: (name, channel_level).
const BUILTIN_ROLES: [(&str, bool); 6] = [
    ("user", false),
    ("admin", false),
    ("guest", false),
    ("anonymous", false),
    ("channel_member", true),
    ("channel_moderator", true),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(
                        ColumnDef::new(Users::Id)
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Users::Name).text().null())
                    .col(ColumnDef::new(Users::Image).text().null())
                    .col(ColumnDef::new(Users::Role).string_len(64).not_null())
                    .col(ColumnDef::new(Users::Custom).json_binary().not_null())
                    .col(ColumnDef::new(Users::Language).string_len(16).not_null())
                    .col(ColumnDef::new(Users::Invisible).boolean().not_null())
                    .col(ColumnDef::new(Users::Teams).json_binary().not_null())
                    .col(ColumnDef::new(Users::TeamsRole).json_binary().not_null())
                    .col(ColumnDef::new(Users::PrivacySettings).json_binary().null())
                    .col(
                        ColumnDef::new(Users::PushNotifications)
                            .json_binary()
                            .null(),
                    )
                    .col(ColumnDef::new(Users::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Users::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Users::DeactivatedAt).big_integer().null())
                    .col(ColumnDef::new(Users::DeletedAt).big_integer().null())
                    .col(ColumnDef::new(Users::LastActive).big_integer().null())
                    .col(
                        ColumnDef::new(Users::RevokeTokensIssuedBefore)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(Users::AvgResponseTime).integer().null())
                    .to_owned(),
            )
            .await?;
        // The default listing: newest first, id as tie-break.
        manager
            .create_index(
                Index::create()
                    .name("idx_users_created_at_id")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await?;
        // The most common filter (role), still in default order.
        manager
            .create_index(
                Index::create()
                    .name("idx_users_role_created_at_id")
                    .table(Users::Table)
                    .col(Users::Role)
                    .col(Users::CreatedAt)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_name")
                    .table(Users::Table)
                    .col(Users::Name)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_updated_at")
                    .table(Users::Table)
                    .col(Users::UpdatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(
                        ColumnDef::new(Roles::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Roles::Builtin).boolean().not_null())
                    .col(ColumnDef::new(Roles::ChannelLevel).boolean().not_null())
                    .col(ColumnDef::new(Roles::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        let mut insert = Query::insert();
        insert.into_table(Roles::Table).columns([
            Roles::Name,
            Roles::Builtin,
            Roles::ChannelLevel,
            Roles::CreatedAt,
        ]);
        for (name, channel_level) in BUILTIN_ROLES {
            insert.values_panic([name.into(), true.into(), channel_level.into(), now.into()]);
        }
        manager.exec_stmt(insert).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Roles::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await?;
        Ok(())
    }
}
