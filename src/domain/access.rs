//! Who is calling, and what it may do. Calling services authenticate with a server token: a JWT
//! signed (HS256) with one of roster's API secrets. Its `service` (or `sub`) claim names the caller
//! in the change feed; its `scope` claim, space-separated, limits what it may call (absent: all).
use std::collections::BTreeSet;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::time::Clock;
use super::token::{TimeClaims, TimeProblem};
use crate::error::Error;

/// What a server token may be limited to. Each use case needs one scope.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
pub enum Scope {
    /// GetUser, QueryUsers, VerifyUserToken, ListRoles, ListDevices, QueryBannedUsers,
    /// GetBlockedUsers.
    #[strum(serialize = "users:read")]
    UsersRead,
    /// UpdateUsers, UpdateUsersPartial, CreateDevice, DeleteDevice.
    #[strum(serialize = "users:write")]
    UsersWrite,
    /// DeactivateUser(s), ReactivateUser(s), DeleteUsers, RestoreUsers, CancelTask.
    #[strum(serialize = "lifecycle:write")]
    LifecycleWrite,
    /// GetTask, ListTasks, WatchTask.
    #[strum(serialize = "tasks:read")]
    TasksRead,
    /// BanUser, UnbanUser, BlockUsers, UnblockUsers.
    #[strum(serialize = "moderation:write")]
    ModerationWrite,
    /// CreateUserToken, RevokeUserTokens.
    #[strum(serialize = "tokens:write")]
    TokensWrite,
    /// WatchUserEvents.
    #[strum(serialize = "events:read")]
    EventsRead,
    /// CreateRole, DeleteRole.
    #[strum(serialize = "roles:write")]
    RolesWrite,
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: Option<String>,
    /// `None`: every scope (a token without `scope`, or authentication off).
    scopes: Option<BTreeSet<Scope>>,
}

impl Caller {
    /// A caller when authentication is off: unnamed, and it may do everything.
    pub fn unauthenticated() -> Self {
        Caller {
            name: None,
            scopes: None,
        }
    }

    /// A named caller limited to `scopes` (`None`: all of them).
    pub fn new(name: impl Into<String>, scopes: Option<BTreeSet<Scope>>) -> Self {
        Caller {
            name: Some(name.into()),
            scopes,
        }
    }

    /// The calling service, as the change feed names it.
    pub fn name(&self) -> Option<String> {
        self.name.clone()
    }

    /// Refuses a call outside the caller's scopes, before anything is read or written.
    pub fn require(&self, scope: Scope) -> Result<(), Error> {
        match &self.scopes {
            Some(scopes) if !scopes.contains(&scope) => Err(Error::MissingScope(scope.into())),
            _ => Ok(()),
        }
    }

    /// The caller a verified token's claims describe. Scopes this version does not know grant
    /// nothing here (a newer replica may know them).
    fn from_claims(claims: &Map<String, Value>) -> Self {
        let text = |claim: &str| claims.get(claim).and_then(Value::as_str);
        let name = text("service")
            .or_else(|| text("sub"))
            .unwrap_or("authenticated");
        let scopes = text("scope").map(|s| {
            s.split_whitespace()
                .filter_map(|s| s.parse::<Scope>().ok())
                .collect()
        });
        Caller::new(name, scopes)
    }
}

/// Why a server token does not authenticate anyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No token where one is required.
    #[error("missing token")]
    Missing,
    /// Not a JWT, not HS256, or not signed with any API secret; nothing more is said.
    #[error("invalid token")]
    Invalid,
    /// A user token (it carries `user_id`). Stream's SDKs sign user tokens with the same secret
    /// as server calls, so with `ROSTER_USER_TOKEN_SECRET` set to an API secret a user's token
    /// would otherwise pass as a server token with every scope.
    #[error("a user token (with `user_id`) cannot authenticate a server call")]
    UserToken,
    /// Well signed, but its time claims refuse it now; the caller is known, so it may be told why
    /// (and a door may give an expired token its own code).
    #[error("{}", .0.describe())]
    Time(TimeProblem),
}

/// Verifies server tokens against the configured API secrets (several, for rotation).
pub struct ServerKeys {
    /// Empty: authentication is off.
    keys: Vec<DecodingKey>,
    validation: Validation,
    /// `exp`, `nbf` and `iat` are judged by roster's clock, as for user tokens.
    clock: Clock,
    leeway: Duration,
}

impl ServerKeys {
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = &'a str>,
        clock: Clock,
        leeway: Duration,
    ) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Server tokens may be long-lived: `exp` is checked when present, not required. The
        // library only checks the signature; the time claims are judged below by the rules user
        // tokens follow (`TimeClaims`).
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let keys = secrets
            .into_iter()
            .map(|s| DecodingKey::from_secret(s.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("an API secret is not usable as an HS256 key: {e}"))?;
        Ok(ServerKeys {
            keys,
            validation,
            clock,
            leeway,
        })
    }

    /// Whether callers must authenticate.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The caller `token` proves; `Caller::unauthenticated()` when authentication is off.
    pub fn verify(&self, token: Option<&str>) -> Result<Caller, TokenRefusal> {
        if !self.required() {
            return Ok(Caller::unauthenticated());
        }
        let token = token.ok_or(TokenRefusal::Missing)?;
        // Every key is tried; the HMAC comparison itself is constant-time.
        let claims = self
            .keys
            .iter()
            .find_map(|key| {
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation).ok()
            })
            .ok_or(TokenRefusal::Invalid)?
            .claims;
        if claims.contains_key("user_id") {
            return Err(TokenRefusal::UserToken);
        }
        // Past the signature the caller is known, so the refusal may say what to fix.
        TimeClaims::read(&claims)
            .and_then(|times| times.check(self.clock.now(), self.leeway))
            .map_err(|problem| match problem {
                TimeProblem::Malformed(_) => TokenRefusal::Invalid,
                problem => TokenRefusal::Time(problem),
            })?;
        Ok(Caller::from_claims(&claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use strum::IntoEnumIterator;

    fn keys() -> ServerKeys {
        ServerKeys::new(["s1", "s2"], Clock::default(), Duration::ZERO).expect("keys")
    }

    fn token(secret: &str, claims: Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("key"),
        )
        .expect("token")
    }

    #[test]
    fn scopes_are_spelled_as_the_readme_lists_them() {
        let names: Vec<&str> = Scope::iter().map(<&str>::from).collect();
        assert_eq!(
            names,
            [
                "users:read",
                "users:write",
                "lifecycle:write",
                "tasks:read",
                "moderation:write",
                "tokens:write",
                "events:read",
                "roles:write"
            ]
        );
    }

    #[test]
    fn a_token_without_scope_may_do_everything_and_one_with_scope_only_that() {
        let keys = keys();
        let all = keys
            .verify(Some(&token("s2", json!({"service": "chat"}))))
            .expect("rotated secret");
        assert_eq!(all.name().as_deref(), Some("chat"));
        assert!(Scope::iter().all(|s| all.require(s).is_ok()));

        let feeds = keys
            .verify(Some(&token(
                "s1",
                json!({"sub": "feeds", "scope": "users:read  events:read future:thing"}),
            )))
            .expect("valid");
        assert_eq!(feeds.name().as_deref(), Some("feeds"));
        assert!(feeds.require(Scope::UsersRead).is_ok());
        assert!(feeds.require(Scope::EventsRead).is_ok());
        let Err(Error::MissingScope(missing)) = feeds.require(Scope::LifecycleWrite) else {
            panic!("a read-only caller may delete");
        };
        assert_eq!(missing, "lifecycle:write");

        let none = keys
            .verify(Some(&token("s1", json!({"service": "x", "scope": ""}))))
            .expect("valid");
        assert!(Scope::iter().all(|s| none.require(s).is_err()));
    }

    #[test]
    fn refusals() {
        let keys = keys();
        assert_eq!(keys.verify(None), Err(TokenRefusal::Missing));
        assert_eq!(
            keys.verify(Some(&token("other", json!({})))),
            Err(TokenRefusal::Invalid)
        );
        assert!(matches!(
            keys.verify(Some(&token("s1", json!({"exp": 1})))),
            Err(TokenRefusal::Time(_))
        ));
        assert_eq!(
            keys.verify(Some(&token("s1", json!({"user_id": "ann"})))),
            Err(TokenRefusal::UserToken),
            "a user token signed with an API secret is no server token"
        );
        let off = ServerKeys::new([], Clock::default(), Duration::ZERO).expect("off");
        assert_eq!(off.verify(None), Ok(Caller::unauthenticated()));
    }
}
