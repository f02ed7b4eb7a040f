//! `roster.v1.ModerationService`: bans and blocks.
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, timestamp};
use crate::app::{App, BlockOf};
use crate::domain::moderation::BanRequest;
use crate::domain::presence::AsOf;
use crate::domain::user::User;
use crate::grpc::pb::{self, moderation_service_server::ModerationService};

pub struct ModerationApi {
    app: App,
}

impl ModerationApi {
    pub fn new(app: App) -> Self {
        ModerationApi { app }
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

fn block(b: BlockOf, as_of: AsOf) -> pb::Block {
    pb::Block {
        blocked_user: b.blocked_user.map(|u| convert::user(u, as_of)),
        user_id: b.block.user_id,
        blocked_user_id: b.block.blocked_user_id,
        created_at: Some(timestamp(b.block.created_at)),
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
        let ban_request = BanRequest {
            target_user_id: req.target_user_id,
            timeout_minutes: req.timeout,
            reason: req.reason,
            shadow: req.shadow,
            banned_by_id: req.banned_by_id,
        };
        let user = self.app.ban_user(&caller, ban_request).await?;
        Ok(Response::new(pb::BanUserResponse {
            ban: ban(user, self.app.as_of_now()),
        }))
    }

    async fn unban_user(
        &self,
        request: Request<pb::UnbanUserRequest>,
    ) -> Result<Response<pb::UnbanUserResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let user = self
            .app
            .unban_user(&caller, &req.target_user_id, req.created_by_id)
            .await?;
        Ok(Response::new(pb::UnbanUserResponse {
            user: Some(convert::user(user, self.app.as_of_now())),
        }))
    }

    async fn query_banned_users(
        &self,
        request: Request<pb::QueryBannedUsersRequest>,
    ) -> Result<Response<pb::QueryBannedUsersResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let page = self
            .app
            .query_banned_users(
                &caller,
                req.exclude_expired_bans,
                req.limit,
                &req.page_token,
            )
            .await?;
        let as_of = self.app.as_of_now();
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
        let caller = caller(&request);
        let req = request.into_inner();
        let made = self
            .app
            .block_user(&caller, &req.user_id, &req.blocked_user_id)
            .await?;
        Ok(Response::new(pb::BlockUsersResponse {
            block: Some(block(made, self.app.as_of_now())),
        }))
    }

    async fn unblock_users(
        &self,
        request: Request<pb::UnblockUsersRequest>,
    ) -> Result<Response<pb::UnblockUsersResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        self.app
            .unblock_user(&caller, &req.user_id, &req.blocked_user_id)
            .await?;
        Ok(Response::new(pb::UnblockUsersResponse {}))
    }

    async fn get_blocked_users(
        &self,
        request: Request<pb::GetBlockedUsersRequest>,
    ) -> Result<Response<pb::GetBlockedUsersResponse>, Status> {
        let caller = caller(&request);
        let blocks = self
            .app
            .blocked_users(&caller, &request.into_inner().user_id)
            .await?;
        let as_of = self.app.as_of_now();
        Ok(Response::new(pb::GetBlockedUsersResponse {
            blocks: blocks.into_iter().map(|b| block(b, as_of)).collect(),
        }))
    }
}
