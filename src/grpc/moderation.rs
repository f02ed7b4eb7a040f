//! `roster.v1.ModerationService`: bans and blocks.
use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, timestamp};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::domain::moderation::{BanQuery, BanRequest, Block, check_block};
use crate::domain::presence::AsOf;
use crate::domain::user::User;
use crate::pb::{self, moderation_service_server::ModerationService};
use crate::store::Store;
use crate::tasks::Hub;

pub struct ModerationApi {
    store: Store,
    hub: Hub,
}

impl ModerationApi {
    pub fn new(store: Store, hub: Hub) -> Self {
        ModerationApi { store, hub }
    }
}

/// A banned user as QueryBannedUsers lists it; `None` for a user without a ban.
fn ban(user: User, as_of: AsOf) -> Option<pb::Ban> {
    let ban = user.ban.clone()?;
    Some(pb::Ban {
        user: Some(convert::user(user, as_of)),
        banned_by_id: ban.banned_by_id.clone(),
        reason: ban.reason.clone(),
        shadow: ban.shadow,
        created_at: Some(timestamp(ban.banned_at)),
        expires: ban.expires.map(timestamp),
        expired: !ban.in_force(as_of.at),
    })
}

fn block(b: Block, blocked: &mut HashMap<String, User>, as_of: AsOf) -> pb::Block {
    pb::Block {
        blocked_user: blocked
            .remove(&b.blocked_user_id)
            .map(|u| convert::user(u, as_of)),
        user_id: b.user_id,
        blocked_user_id: b.blocked_user_id,
        created_at: Some(timestamp(b.created_at)),
    }
}

#[tonic::async_trait]
impl ModerationService for ModerationApi {
    async fn ban_user(
        &self,
        request: Request<pb::BanUserRequest>,
    ) -> Result<Response<pb::BanUserResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let actor = Actor::new(caller, req.banned_by_id.clone());
        let user = self
            .store
            .ban_user(
                BanRequest {
                    target_user_id: req.target_user_id,
                    timeout_minutes: req.timeout,
                    reason: req.reason,
                    shadow: req.shadow,
                    banned_by_id: req.banned_by_id,
                },
                &actor,
            )
            .await?;
        self.hub.events_appended();
        Ok(Response::new(pb::BanUserResponse {
            ban: ban(user, self.store.as_of_now()),
        }))
    }

    async fn unban_user(
        &self,
        request: Request<pb::UnbanUserRequest>,
    ) -> Result<Response<pb::UnbanUserResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        check_id("target_user_id", &req.target_user_id)?;
        if let Some(id) = &req.created_by_id {
            check_id("created_by_id", id)?;
        }
        let actor = Actor::new(caller, req.created_by_id);
        let user = self.store.unban_user(&req.target_user_id, &actor).await?;
        self.hub.events_appended();
        Ok(Response::new(pb::UnbanUserResponse {
            user: Some(convert::user(user, self.store.as_of_now())),
        }))
    }

    async fn query_banned_users(
        &self,
        request: Request<pb::QueryBannedUsersRequest>,
    ) -> Result<Response<pb::QueryBannedUsersResponse>, Status> {
        let req = request.into_inner();
        let query = BanQuery::parse(req.exclude_expired_bans, req.limit, &req.page_token)?;
        let page = self.store.query_banned_users(&query).await?;
        let as_of = self.store.as_of_now();
        Ok(Response::new(pb::QueryBannedUsersResponse {
            bans: page
                .users
                .into_iter()
                .filter_map(|u| ban(u, as_of))
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn block_users(
        &self,
        request: Request<pb::BlockUsersRequest>,
    ) -> Result<Response<pb::BlockUsersResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let req = request.into_inner();
        check_block(&req.user_id, &req.blocked_user_id)?;
        let made = self
            .store
            .block_user(&req.user_id, &req.blocked_user_id, &actor)
            .await?;
        self.hub.events_appended();
        let mut blocked = self
            .store
            .visible_users([made.blocked_user_id.clone()])
            .await?;
        Ok(Response::new(pb::BlockUsersResponse {
            block: Some(block(made, &mut blocked, self.store.as_of_now())),
        }))
    }

    async fn unblock_users(
        &self,
        request: Request<pb::UnblockUsersRequest>,
    ) -> Result<Response<pb::UnblockUsersResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let req = request.into_inner();
        check_block(&req.user_id, &req.blocked_user_id)?;
        self.store
            .unblock_user(&req.user_id, &req.blocked_user_id, &actor)
            .await?;
        self.hub.events_appended();
        Ok(Response::new(pb::UnblockUsersResponse {}))
    }

    async fn get_blocked_users(
        &self,
        request: Request<pb::GetBlockedUsersRequest>,
    ) -> Result<Response<pb::GetBlockedUsersResponse>, Status> {
        let req = request.into_inner();
        check_id("user_id", &req.user_id)?;
        let blocks = self.store.blocks_of(&req.user_id).await?;
        let mut blocked = self
            .store
            .visible_users(blocks.iter().map(|b| b.blocked_user_id.clone()))
            .await?;
        let as_of = self.store.as_of_now();
        Ok(Response::new(pb::GetBlockedUsersResponse {
            blocks: blocks
                .into_iter()
                .map(|b| block(b, &mut blocked, as_of))
                .collect(),
        }))
    }
}
