//! `roster.v1.TokenService`: issuing and verifying user tokens, and revoking them.
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, micros, timestamp};
use super::users::user_map;
use crate::app::App;
use crate::error::Error;
use crate::grpc::pb::{self, token_service_server::TokenService};

pub struct TokenApi {
    app: App,
}

impl TokenApi {
    pub fn new(app: App) -> Self {
        TokenApi { app }
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
        let caller = caller(&request);
        let req = request.into_inner();
        let issued = self
            .app
            .create_user_token(&caller, &req.user_id, lifetime(req.expires_in)?)
            .await?;
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
        let caller = caller(&request);
        let (user, claims) = self
            .app
            .verify_user_token(&caller, &request.into_inner().token)
            .await?;
        Ok(Response::new(pb::VerifyUserTokenResponse {
            user: Some(convert::user(user, self.app.as_of_now())),
            issued_at: claims.issued_at.map(timestamp),
            expires_at: claims.expires_at.map(timestamp),
        }))
    }

    async fn revoke_user_tokens(
        &self,
        request: Request<pb::RevokeUserTokensRequest>,
    ) -> Result<Response<pb::RevokeUserTokensResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let before = match req.before {
            Some(ts) => {
                Some(micros(&ts).ok_or_else(|| Error::invalid("before", "not a valid timestamp"))?)
            }
            None => None,
        };
        let users = self
            .app
            .revoke_user_tokens(&caller, &req.user_ids, before)
            .await?;
        Ok(Response::new(pb::RevokeUserTokensResponse {
            users: user_map(users, self.app.as_of_now()),
        }))
    }
}
