//! Token revocation and presence: the two things about tokens roster stores.
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Store;
use super::entities::user::{self, Column as U};
use super::events::{self, NewEvent};
use super::user_rows::{attach_relations, lock_users};
use crate::domain::event::{Actor, EventKind};
use crate::domain::time::Micros;
use crate::domain::user::User;
use crate::error::{Error, Result};

impl Store {
    /// Refuses every token issued before `before` (now when absent; an instant in the future
    /// counts as now), for each of `ids`, all or nothing.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(count = ids.len()))]
    pub async fn revoke_tokens(
        &self,
        ids: &[String],
        before: Option<Micros>,
        actor: &Actor,
    ) -> Result<Vec<User>> {
        let mut tx = self.write().await?;
        let mut rows = lock_users(&tx.txn, ids.iter().cloned()).await?;
        let now = tx.now();
        let before = before.map_or(now, |b| Ord::min(b, now));
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            let row = rows
                .remove(id)
                .ok_or_else(|| Error::UserNotFound(id.clone()))?;
            if row.deleted_at.is_some() {
                return Err(Error::UserDeleted(row.id));
            }
            let mut user = User::from(row);
            user.revoke_tokens_issued_before = Some(before);
            user.updated_at = now;
            users.push(user);
        }
        user::Entity::update_many()
            .col_expr(U::RevokeTokensIssuedBefore, Expr::value(before))
            .col_expr(U::UpdatedAt, Expr::value(now))
            .filter(U::Id.is_in(ids.iter().cloned()))
            .exec(&tx.txn)
            .await?;
        attach_relations(&tx.txn, &mut users).await?;
        let events = users
            .iter()
            .map(|u| NewEvent::user(EventKind::UserTokensRevoked, u))
            .collect();
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// Records that `user` was active now, unless that was recorded recently enough (see
    /// `Presence::needs_write`). Presence is not a change of the user: `updated_at` stays, and no
    /// event is appended.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(user_id = %user.fields.id))]
    pub async fn record_activity(&self, user: &mut User) -> Result<()> {
        if !self.presence.needs_write(user.last_active, self.now()) {
            return Ok(());
        }
        let mut tx = self.write().await?;
        let now = tx.now();
        user::Entity::update_many()
            .col_expr(U::LastActive, Expr::value(now))
            .filter(U::Id.eq(user.fields.id.clone()))
            // Never backwards, whatever a concurrent verification wrote.
            .filter(U::LastActive.is_null().or(U::LastActive.lt(now)))
            .exec(&tx.txn)
            .await?;
        tx.commit().await?;
        user.last_active = Some(now);
        Ok(())
    }
}
