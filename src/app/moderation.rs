//! Bans and blocks.
use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::domain::moderation::{BanQuery, BanRequest, Block, check_block};
use crate::domain::user::User;
use crate::error::Result;
use crate::store::BanPage;

/// A block, with the blocked user when that user is still visible (not deleted).
#[derive(Debug, Clone)]
pub struct BlockOf {
    pub block: Block,
    pub blocked_user: Option<User>,
}

impl App {
    /// BanUser: the banned user. `banned_by_id` is also the feed's acting user.
    pub async fn ban_user(&self, caller: &Caller, request: BanRequest) -> Result<User> {
        self.admit(caller, Scope::ModerationWrite)?;
        let actor = Actor::new(caller.name(), request.banned_by_id.clone());
        let user = self.store.ban_user(request, &actor).await?;
        self.bus.events_appended();
        Ok(user)
    }

    pub async fn unban_user(
        &self,
        caller: &Caller,
        target_user_id: &str,
        created_by_id: Option<String>,
    ) -> Result<User> {
        self.admit(caller, Scope::ModerationWrite)?;
        check_id("target_user_id", target_user_id)?;
        if let Some(id) = &created_by_id {
            check_id("created_by_id", id)?;
        }
        let actor = Actor::new(caller.name(), created_by_id);
        let user = self.store.unban_user(target_user_id, &actor).await?;
        self.bus.events_appended();
        Ok(user)
    }

    /// QueryBannedUsers: one page of banned users, most recent ban first.
    pub async fn query_banned_users(
        &self,
        caller: &Caller,
        exclude_expired: bool,
        limit: u32,
        page_token: &str,
    ) -> Result<BanPage> {
        self.admit(caller, Scope::UsersRead)?;
        let query = BanQuery::parse(exclude_expired, limit, page_token)?;
        self.store.query_banned_users(&query).await
    }

    /// BlockUsers: `user_id` blocks `blocked_user_id` (blocking twice is one block).
    pub async fn block_user(
        &self,
        caller: &Caller,
        user_id: &str,
        blocked_user_id: &str,
    ) -> Result<BlockOf> {
        self.admit(caller, Scope::ModerationWrite)?;
        check_block(user_id, blocked_user_id)?;
        let block = self
            .store
            .block_user(user_id, blocked_user_id, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        let mut visible = self
            .store
            .visible_users([block.blocked_user_id.clone()])
            .await?;
        Ok(BlockOf {
            blocked_user: visible.remove(&block.blocked_user_id),
            block,
        })
    }

    pub async fn unblock_user(
        &self,
        caller: &Caller,
        user_id: &str,
        blocked_user_id: &str,
    ) -> Result<()> {
        self.admit(caller, Scope::ModerationWrite)?;
        check_block(user_id, blocked_user_id)?;
        self.store
            .unblock_user(user_id, blocked_user_id, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(())
    }

    /// GetBlockedUsers: the users `user_id` blocks, in the order the blocks were made.
    pub async fn blocked_users(&self, caller: &Caller, user_id: &str) -> Result<Vec<BlockOf>> {
        self.admit(caller, Scope::UsersRead)?;
        check_id("user_id", user_id)?;
        let blocks = self.store.blocks_of(user_id).await?;
        let mut visible = self
            .store
            .visible_users(blocks.iter().map(|b| b.blocked_user_id.clone()))
            .await?;
        Ok(blocks
            .into_iter()
            .map(|block| BlockOf {
                blocked_user: visible.remove(&block.blocked_user_id),
                block,
            })
            .collect())
    }
}
