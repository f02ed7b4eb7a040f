//! Bans and blocks. Each write locks the user it changes, so concurrent requests for one user
//! queue instead of racing (a second identical block finds the first one).
use sea_orm::{
    ActiveValue::{Set, Unchanged},
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    sea_query::ExprTrait,
};

use super::Store;
use super::entities::user::{self, Column as U};
use super::entities::user_block::{self, Column as B};
use super::events::{self, NewEvent};
use super::user_rows::{attach_relations, lock_live_user};
use crate::domain::event::{Actor, EventKind};
use crate::domain::moderation::{
    Ban, BanQuery, BanRequest, Block, MAX_BLOCKS_PER_USER, ban_page_token,
};
use crate::domain::user::User;
use crate::error::{Error, Result};

/// A page of bans (each user with its ban) and the token for the next one.
pub struct BanPage {
    pub users: Vec<User>,
    pub next_page_token: Option<String>,
}

impl Store {
    /// Bans a user (replacing any ban it has) and returns it as it is now.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(user_id = %request.target_user_id))]
    pub async fn ban_user(&self, request: BanRequest, actor: &Actor) -> Result<User> {
        let id = request.target_user_id.clone();
        let ban = request.ban(self.now())?;
        let mut tx = self.write().await?;
        let mut user = lock_live_user(&tx.txn, &id).await?;
        let now = tx.now();
        let ban = ban.made_at(now);
        user::Entity::update(ban_columns(&id, Some(&ban), now))
            .exec(&tx.txn)
            .await?;
        user.ban = Some(ban);
        user.updated_at = now;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::user(EventKind::UserBanned, &user)],
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Lifts a user's ban (expired or not). A user without a ban is left alone.
    #[tracing::instrument(level = "debug", skip(self, actor), err(level = "debug"))]
    pub async fn unban_user(&self, id: &str, actor: &Actor) -> Result<User> {
        let mut tx = self.write().await?;
        let mut user = lock_live_user(&tx.txn, id).await?;
        if user.ban.is_none() {
            return Ok(user);
        }
        let now = tx.now();
        user::Entity::update(ban_columns(id, None, now))
            .exec(&tx.txn)
            .await?;
        user.ban = None;
        user.updated_at = now;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::user(EventKind::UserUnbanned, &user)],
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Users with a ban (deleted users never), newest ban first.
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn query_banned_users(&self, query: &BanQuery) -> Result<BanPage> {
        let mut select = user::Entity::find()
            .filter(U::BannedAt.is_not_null())
            .filter(U::DeletedAt.is_null());
        if query.exclude_expired {
            select = select.filter(U::BanExpires.is_null().or(U::BanExpires.gt(self.now())));
        }
        if let Some((banned_at, id)) = &query.after {
            select = select.filter(
                U::BannedAt
                    .lt(*banned_at)
                    .or(U::BannedAt.eq(*banned_at).and(U::Id.lt(id.clone()))),
            );
        }
        let rows = select
            .order_by_desc(U::BannedAt)
            .order_by_desc(U::Id)
            .limit(query.limit + 1)
            .all(self.conn())
            .await?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        let mut users: Vec<User> = rows.into_iter().take(limit).map(User::from).collect();
        attach_relations(self.conn(), &mut users).await?;
        let next_page_token = match users.last() {
            Some(last) if more => last
                .ban
                .as_ref()
                .map(|ban| ban_page_token(ban.banned_at, &last.fields.id)),
            _ => None,
        };
        Ok(BanPage {
            users,
            next_page_token,
        })
    }

    /// `user_id` blocks `blocked_user_id`. Blocking twice is one block: the first one is returned.
    #[tracing::instrument(level = "debug", skip(self, actor), err(level = "debug"))]
    pub async fn block_user(
        &self,
        user_id: &str,
        blocked_user_id: &str,
        actor: &Actor,
    ) -> Result<Block> {
        let mut tx = self.write().await?;
        let mut user = lock_live_user(&tx.txn, user_id).await?;
        let now = tx.now();
        let existing =
            user_block::Entity::find_by_id((user_id.to_owned(), blocked_user_id.to_owned()))
                .one(&tx.txn)
                .await?;
        if let Some(existing) = existing {
            return Ok(existing.into());
        }
        let blocked = user::Entity::find_by_id(blocked_user_id.to_owned())
            .one(&tx.txn)
            .await?
            .ok_or_else(|| Error::UserNotFound(blocked_user_id.to_owned()))?;
        if blocked.deleted_at.is_some() {
            return Err(Error::UserDeleted(blocked.id));
        }
        if user.blocked_user_ids.len() >= MAX_BLOCKS_PER_USER {
            return Err(Error::LimitExceeded(format!(
                "a user blocks at most {MAX_BLOCKS_PER_USER} users"
            )));
        }
        let block = Block {
            user_id: user_id.to_owned(),
            blocked_user_id: blocked_user_id.to_owned(),
            created_at: now,
        };
        user_block::Entity::insert(user_block::ActiveModel {
            user_id: Set(block.user_id.clone()),
            blocked_user_id: Set(block.blocked_user_id.clone()),
            created_at: Set(now),
        })
        .exec_without_returning(&tx.txn)
        .await
        .map_err(|err| match err.sql_err() {
            // The blocked user was hard-deleted after we looked it up.
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                Error::UserNotFound(blocked_user_id.to_owned())
            }
            _ => err.into(),
        })?;
        touch_updated_at(&tx.txn, user_id, now).await?;
        user.blocked_user_ids.push(blocked_user_id.to_owned());
        user.updated_at = now;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::user(EventKind::UserBlocked, &user)],
        )
        .await?;
        tx.commit().await?;
        Ok(block)
    }

    /// Removes a block; a block that does not exist is left alone. The blocked user need not
    /// exist any more.
    #[tracing::instrument(level = "debug", skip(self, actor), err(level = "debug"))]
    pub async fn unblock_user(
        &self,
        user_id: &str,
        blocked_user_id: &str,
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let mut user = lock_live_user(&tx.txn, user_id).await?;
        let now = tx.now();
        let removed = user_block::Entity::delete_many()
            .filter(B::UserId.eq(user_id.to_owned()))
            .filter(B::BlockedUserId.eq(blocked_user_id.to_owned()))
            .exec(&tx.txn)
            .await?;
        if removed.rows_affected == 0 {
            return Ok(());
        }
        touch_updated_at(&tx.txn, user_id, now).await?;
        user.blocked_user_ids.retain(|id| id != blocked_user_id);
        user.updated_at = now;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::user(EventKind::UserUnblocked, &user)],
        )
        .await?;
        tx.commit().await
    }

    /// The blocks `user_id` made, oldest first.
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn blocks_of(&self, user_id: &str) -> Result<Vec<Block>> {
        let live = user::Entity::find_by_id(user_id.to_owned())
            .one(self.conn())
            .await?
            .is_some_and(|row| row.deleted_at.is_none());
        if !live {
            return Err(Error::UserNotFound(user_id.to_owned()));
        }
        let rows = user_block::Entity::find()
            .filter(B::UserId.eq(user_id.to_owned()))
            .order_by_asc(B::CreatedAt)
            .order_by_asc(B::BlockedUserId)
            .all(self.conn())
            .await?;
        Ok(rows.into_iter().map(Block::from).collect())
    }
}

/// The update that sets (or, with `None`, clears) a user's ban.
fn ban_columns(id: &str, ban: Option<&Ban>, now: i64) -> user::ActiveModel {
    user::ActiveModel {
        id: Unchanged(id.to_owned()),
        banned_at: Set(ban.map(|b| b.banned_at)),
        ban_expires: Set(ban.and_then(|b| b.expires)),
        ban_reason: Set(ban.and_then(|b| b.reason.clone())),
        shadow_banned: Set(ban.is_some_and(|b| b.shadow)),
        banned_by_id: Set(ban.and_then(|b| b.banned_by_id.clone())),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// A change to a user's own rows (blocks, devices) changes the user.
pub(crate) async fn touch_updated_at(
    txn: &sea_orm::DatabaseTransaction,
    id: &str,
    now: i64,
) -> Result<()> {
    user::Entity::update(user::ActiveModel {
        id: Unchanged(id.to_owned()),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(())
}
