//! `roster.v1.TokenService`: issuing and verifying user tokens, and revoking them.
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, micros, timestamp};
use super::users::user_map;
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::domain::lifecycle::check_ids;
use crate::domain::token::{UserTokens, admit};
use crate::error::Error;
use crate::pb::{self, token_service_server::TokenService};
use crate::store::Store;
use crate::tasks::Hub;

pub struct TokenApi {
    store: Store,
    hub: Hub,
    /// `None` when no user-token secret is configured.
    tokens: Option<UserTokens>,
}

impl TokenApi {
    pub fn new(store: Store, hub: Hub, tokens: Option<UserTokens>) -> Self {
        TokenApi { store, hub, tokens }
    }

    fn tokens(&self) -> Result<&UserTokens, Error> {
        self.tokens.as_ref().ok_or(Error::UserTokensDisabled)
    }
}

/// `expires_in` as a duration; `None` when absent (a token without expiry).
fn lifetime(expires_in: Option<prost_types::Duration>) -> Result<Option<Duration>, Error> {
    let Some(d) = expires_in else {
        return Ok(None);
    };
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => {
            Ok(Some(Duration::new(seconds, nanos)))
        }
        _ => Err(Error::invalid("expires_in", "must be a positive duration")),
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn create_user_token(
        &self,
        request: Request<pb::CreateUserTokenRequest>,
    ) -> Result<Response<pb::CreateUserTokenResponse>, Status> {
        let tokens = self.tokens()?;
        let req = request.into_inner();
        check_id("user_id", &req.user_id)?;
        let lifetime = lifetime(req.expires_in)?;
        let user = self.store.get_user(&req.user_id, true).await?;
        if user.deleted_at.is_some() {
            return Err(Error::UserDeleted(req.user_id).into());
        }
        let issued = tokens.issue(
            &req.user_id,
            self.store.now(),
            lifetime,
            user.revoke_tokens_issued_before,
        )?;
        Ok(Response::new(pb::CreateUserTokenResponse {
            token: issued.token,
            issued_at: Some(timestamp(issued.issued_at)),
            expires_at: issued.expires_at.map(timestamp),
        }))
    }

    async fn verify_user_token(
        &self,
        request: Request<pb::VerifyUserTokenRequest>,
    ) -> Result<Response<pb::VerifyUserTokenResponse>, Status> {
        let tokens = self.tokens()?;
        let req = request.into_inner();
        let now = self.store.now();
        let claims = tokens.verify(&req.token, now)?;
        let user = self.store.find_user(&claims.user_id).await?;
        admit(&claims, user.as_ref(), now)?;
        let Some(mut user) = user else {
            return Err(Error::Internal("admitted a token without a user".into()).into());
        };
        self.store.record_activity(&mut user).await?;
        Ok(Response::new(pb::VerifyUserTokenResponse {
            user: Some(convert::user(user, self.store.as_of_now())),
            issued_at: claims.issued_at.map(timestamp),
            expires_at: claims.expires_at.map(timestamp),
        }))
    }

    async fn revoke_user_tokens(
        &self,
        request: Request<pb::RevokeUserTokensRequest>,
    ) -> Result<Response<pb::RevokeUserTokensResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let req = request.into_inner();
        check_ids(&req.user_ids)?;
        let before = match req.before {
            Some(ts) => {
                Some(micros(&ts).ok_or_else(|| Error::invalid("before", "not a valid timestamp"))?)
            }
            None => None,
        };
        let users = self
            .store
            .revoke_tokens(&req.user_ids, before, &actor)
            .await?;
        self.hub.events_appended();
        Ok(Response::new(pb::RevokeUserTokensResponse {
            users: user_map(users, self.store.as_of_now()),
        }))
    }
}
