//! Roles: the built-ins seeded by the first migration, plus up to 25 custom roles.
use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement, sea_query::LockType,
};

use super::Store;
use super::entities::role::{self, Column};
use super::events::{self, NewEvent};
use super::sql_text::SqlText;
use crate::domain::event::{Actor, EventKind};
use crate::domain::role::{MAX_CUSTOM_ROLES, Role, name_problem};
use crate::domain::user::RoleScope;
use crate::error::{Error, Result};

/// Advisory lock key for role creation and deletion ("roles").
const ROLES_LOCK_KEY: i64 = 0x72_6f6c_6573;

impl From<role::Model> for Role {
    fn from(m: role::Model) -> Self {
        Role {
            name: m.name,
            builtin: m.builtin,
            channel_level: m.channel_level,
            created_at: m.created_at,
        }
    }
}

impl Store {
    /// The named roles that exist, with where they may be used. On PostgreSQL the rows are
    /// locked `FOR KEY SHARE` until the writing transaction ends, so a concurrent DeleteRole waits
    /// for it (and then sees the user holding the role) instead of leaving a user with a role
    /// that no longer exists.
    pub(crate) async fn role_scopes<'a>(
        &self,
        conn: &impl ConnectionTrait,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, RoleScope>> {
        let mut names: Vec<&str> = names.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        let roles = role::Entity::find()
            .filter(Column::Name.is_in(names))
            .order_by_asc(Column::Name)
            .lock(LockType::KeyShare)
            .all(conn)
            .await?;
        Ok(roles
            .into_iter()
            .map(|r| {
                let scope = if r.channel_level {
                    RoleScope::Channel
                } else {
                    RoleScope::Global
                };
                (r.name, scope)
            })
            .collect())
    }

    /// Serializes role creation and deletion on PostgreSQL (SQLite's writer slot already does),
    /// so that the custom-role count cannot be raced past its limit.
    async fn lock_roles(&self, txn: &impl ConnectionTrait) -> Result<()> {
        if self.backend() == DatabaseBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [ROLES_LOCK_KEY.into()],
            ))
            .await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn create_role(&self, name: &str, actor: &Actor) -> Result<Role> {
        if let Some(problem) = name_problem(name) {
            return Err(Error::invalid("name", problem));
        }
        let mut tx = self.write().await?;
        self.lock_roles(&tx.txn).await?;
        let now = tx.now();
        let existing = role::Entity::find_by_id(name.to_owned())
            .one(&tx.txn)
            .await?;
        if existing.is_some() {
            return Err(Error::RoleExists(name.to_owned()));
        }
        let custom = role::Entity::find()
            .filter(Column::Builtin.eq(false))
            .count(&tx.txn)
            .await?;
        if custom >= MAX_CUSTOM_ROLES {
            return Err(Error::LimitExceeded(format!(
                "at most {MAX_CUSTOM_ROLES} custom roles"
            )));
        }
        let model = role::ActiveModel {
            name: Set(name.to_owned()),
            builtin: Set(false),
            channel_level: Set(false),
            created_at: Set(now),
        };
        let inserted = role::Entity::insert(model)
            .exec_with_returning(&tx.txn)
            .await?;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::role(EventKind::RoleCreated, name)],
        )
        .await?;
        tx.commit().await?;
        Ok(inserted.into())
    }

    /// Built-in roles first, then custom roles, each by name.
    pub async fn list_roles(&self) -> Result<Vec<Role>> {
        let roles = role::Entity::find()
            .order_by_desc(Column::Builtin)
            .order_by_asc(Column::Name)
            .all(self.conn())
            .await?;
        Ok(roles.into_iter().map(Role::from).collect())
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn delete_role(&self, name: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.write().await?;
        self.lock_roles(&tx.txn).await?;
        let now = tx.now();
        let role = role::Entity::find_by_id(name.to_owned())
            .lock_exclusive()
            .one(&tx.txn)
            .await?
            .ok_or_else(|| Error::RoleNotFound(name.to_owned()))?;
        if role.builtin {
            return Err(Error::RoleBuiltin(name.to_owned()));
        }
        // A role is in use while a user that is or may again be visible holds it, globally or in
        // a team: soft-deleted users count (RestoreUsers brings them back as they were, and a
        // user's role always names an existing role); pruned and hard-deleted ones do not.
        let mut sql = SqlText::new(self.backend());
        sql.push("SELECT 1 FROM users WHERE pruned_at IS NULL AND (role = ");
        sql.bind(name);
        sql.push(match self.backend() {
            DatabaseBackend::Postgres => {
                " OR EXISTS (SELECT 1 FROM jsonb_each_text(teams_role) AS t WHERE t.value = "
            }
            _ => " OR EXISTS (SELECT 1 FROM json_each(users.teams_role) AS t WHERE t.value = ",
        });
        sql.bind(name);
        sql.push(")) LIMIT 1");
        let in_use = tx.txn.query_one_raw(sql.into_statement()).await?.is_some();
        if in_use {
            return Err(Error::RoleInUse(name.to_owned()));
        }
        role::Entity::delete_by_id(name.to_owned())
            .exec(&tx.txn)
            .await?;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::role(EventKind::RoleDeleted, name)],
        )
        .await?;
        tx.commit().await
    }
}
