//! User tokens: issued for a user, verified (where a deactivated, deleted or banned user is
//! refused), and revoked.
use std::time::Duration;

use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::domain::lifecycle::check_ids;
use crate::domain::time::Micros;
use crate::domain::token::{Claims, Issued, UserTokens, admit};
use crate::domain::user::User;
use crate::error::{Error, Result};

impl App {
    fn user_tokens(&self) -> Result<&UserTokens> {
        self.tokens.as_deref().ok_or(Error::UserTokensDisabled)
    }

    /// CreateUserToken: a token for `user_id`, valid for `lifetime` (`None`: no expiry).
    pub async fn create_user_token(
        &self,
        caller: &Caller,
        user_id: &str,
        lifetime: Option<Duration>,
    ) -> Result<Issued> {
        self.admit(caller, Scope::TokensWrite)?;
        let tokens = self.user_tokens()?;
        check_id("user_id", user_id)?;
        let user = self.store.get_user(user_id, true).await?;
        if user.deleted_at.is_some() {
            return Err(Error::UserDeleted(user_id.to_owned()));
        }
        tokens.issue(
            user_id,
            self.store.now(),
            lifetime,
            user.revoke_tokens_issued_before,
        )
    }

    /// VerifyUserToken: the user the token proves, if that user may act; records the activity.
    pub async fn verify_user_token(&self, caller: &Caller, token: &str) -> Result<(User, Claims)> {
        self.admit(caller, Scope::UsersRead)?;
        let tokens = self.user_tokens()?;
        let now = self.store.now();
        let claims = tokens.verify(token, now)?;
        let user = self.store.find_user(&claims.user_id).await?;
        admit(&claims, user.as_ref(), now)?;
        let Some(mut user) = user else {
            return Err(Error::Internal("admitted a token without a user".into()));
        };
        self.store.record_activity(&mut user).await?;
        Ok((user, claims))
    }

    /// RevokeUserTokens: tokens of these users issued before `before` (default: now) stop
    /// verifying.
    pub async fn revoke_user_tokens(
        &self,
        caller: &Caller,
        user_ids: &[String],
        before: Option<Micros>,
    ) -> Result<Vec<User>> {
        self.admit(caller, Scope::TokensWrite)?;
        check_ids(user_ids)?;
        let users = self
            .store
            .revoke_tokens(user_ids, before, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(users)
    }
}
