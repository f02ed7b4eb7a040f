//! User tokens: HS256 JWTs with `user_id`, `iat` and (optionally) `exp`, signed with the
//! configured user-token secret, and the rules that decide whether one lets its user act.
//!
//! Instants come from roster's clock, not from the JWT library's, so that expiry follows the same
//! time as everything else (and tests can move it). Signature checks are the library's, and
//! constant-time. The time claims (`iat`, `exp`, `nbf`) of caller tokens and user tokens are read
//! and judged here, by the same rules and with the same leeway (`TimeClaims`).
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use super::ids::id_problem;
use super::time::Micros;
use super::user::User;
use crate::error::{Error, Forbidden, TokenRejection};

/// HS256 keys shorter than the hash output are weak (RFC 7518, section 3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest token VerifyUserToken reads; anything longer is refused before any work.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `expires_in` (about ten years).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Default allowance for clocks that disagree, for `exp`, `nbf` and `iat` alike.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
/// Largest `--token-leeway-seconds`: more would keep expired tokens alive for minutes.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

const MICROS_PER_SECOND: i64 = 1_000_000;

/// The registered time claims of a JWT (RFC 7519, section 4.1.4 to 4.1.6), in micros. Each is a
/// NumericDate when present: a JSON number of seconds, possibly with a fraction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeClaims {
    pub issued_at: Option<Micros>,
    pub expires_at: Option<Micros>,
    pub not_before: Option<Micros>,
}

/// Why a token's time claims do not let it be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeProblem {
    /// The named claim is present but not a NumericDate in range.
    Malformed(&'static str),
    /// `exp` (plus the leeway) has passed.
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    /// `iat` is ahead (beyond the leeway): a token cannot be used before it was issued.
    IssuedInTheFuture,
}

impl TimeProblem {
    /// What a caller can act on, in roster's words.
    pub fn describe(self) -> &'static str {
        match self {
            TimeProblem::Malformed("iat") => "`iat` is not a number of seconds since the epoch",
            TimeProblem::Malformed("exp") => "`exp` is not a number of seconds since the epoch",
            TimeProblem::Malformed(_) => "`nbf` is not a number of seconds since the epoch",
            TimeProblem::Expired => "the token has expired",
            TimeProblem::NotYetValid => "the token is not valid yet (`nbf` is in the future)",
            TimeProblem::IssuedInTheFuture => {
                "the token is used before it was issued (`iat` is in the future)"
            }
        }
    }
}

impl TimeClaims {
    /// Reads `iat`, `exp` and `nbf` from a token's claims. `null`, strings, booleans and numbers
    /// out of range are malformed, never ignored: a token whose limits cannot be read is refused.
    pub fn read(claims: &Map<String, Value>) -> Result<TimeClaims, TimeProblem> {
        let instant = |name: &'static str| -> Result<Option<Micros>, TimeProblem> {
            let Some(value) = claims.get(name) else {
                return Ok(None);
            };
            let micros = value
                .as_f64()
                .map(|seconds| (seconds * 1e6).round())
                .filter(|m| m.is_finite() && m.abs() < 9.0e18)
                .ok_or(TimeProblem::Malformed(name))?;
            Ok(Some(micros as i64))
        };
        Ok(TimeClaims {
            issued_at: instant("iat")?,
            expires_at: instant("exp")?,
            not_before: instant("nbf")?,
        })
    }

    /// Whether a token with these claims may be used at `now`. Each limit is widened by
    /// `leeway`: refused once `now >= exp + leeway`, while `now + leeway < nbf`, and when
    /// `iat > now + leeway`.
    pub fn check(&self, now: Micros, leeway: Duration) -> Result<(), TimeProblem> {
        let leeway = i64::try_from(leeway.as_micros()).unwrap_or(i64::MAX);
        let ahead = now.saturating_add(leeway);
        if self
            .expires_at
            .is_some_and(|exp| now >= exp.saturating_add(leeway))
        {
            return Err(TimeProblem::Expired);
        }
        if self.not_before.is_some_and(|nbf| ahead < nbf) {
            return Err(TimeProblem::NotYetValid);
        }
        if self.issued_at.is_some_and(|iat| iat > ahead) {
            return Err(TimeProblem::IssuedInTheFuture);
        }
        Ok(())
    }
}

/// A JWT library refusal in roster's words: no library type, parser message or input position
/// reaches a caller.
pub fn describe_decode_error(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "the signature does not match",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token must be signed with HS256"
        }
        ErrorKind::Json(_) => "the token's header or claims cannot be read",
        _ => "not a well-formed JWT (three base64url parts: header, claims, signature)",
    }
}

/// Signs and checks user tokens with one secret.
#[derive(Clone)]
pub struct UserTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    leeway: Duration,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserTokens { secret: <redacted> }")
    }
}

/// A token CreateUserToken made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub issued_at: Micros,
    pub expires_at: Option<Micros>,
}

/// What a well-signed, unexpired token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user_id: String,
    pub issued_at: Option<Micros>,
    pub expires_at: Option<Micros>,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    user_id: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

impl UserTokens {
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the user-token secret must be at least {MIN_SECRET_BYTES} bytes, got {}",
                secret.len()
            ));
        }
        // Only the RustCrypto backend is compiled in; installing it explicitly keeps that true
        // even if another crate in the build enables a second backend. An error means a provider
        // is installed already.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let encoding = EncodingKey::from_secret(secret).map_err(|e| e.to_string())?;
        let decoding = DecodingKey::from_secret(secret).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and not-before are checked against roster's clock in `verify`.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Ok(UserTokens {
            encoding,
            decoding,
            validation,
            leeway: DEFAULT_LEEWAY,
        })
    }

    /// The same signer, judging time claims with `leeway` (see `TimeClaims::check`).
    pub fn with_leeway(self, leeway: Duration) -> Self {
        UserTokens { leeway, ..self }
    }

    /// A token for `user_id` issued at `now`, valid for `lifetime` (forever when `None`).
    ///
    /// `iat` is whole seconds, and VerifyUserToken refuses tokens whose `iat` is before the
    /// user's `revoked_before`. A token issued in the same second as a revocation would thus be
    /// refused at once; its `iat` is moved to the next whole second instead.
    pub fn issue(
        &self,
        user_id: &str,
        now: Micros,
        lifetime: Option<Duration>,
        revoked_before: Option<Micros>,
    ) -> Result<Issued, Error> {
        if let Some(lifetime) = lifetime
            && (lifetime.is_zero() || lifetime > MAX_TOKEN_LIFETIME)
        {
            return Err(Error::invalid(
                "expires_in",
                format!(
                    "must be positive and at most {} days; leave it out for a token without expiry",
                    MAX_TOKEN_LIFETIME.as_secs() / 86_400
                ),
            ));
        }
        let mut iat = now.div_euclid(MICROS_PER_SECOND);
        if let Some(revoked) = revoked_before
            && revoked <= now
            && iat * MICROS_PER_SECOND < revoked
        {
            iat = revoked.div_euclid(MICROS_PER_SECOND) + 1;
        }
        let exp = lifetime.map(|l| {
            let seconds = l.as_secs() + u64::from(l.subsec_nanos() > 0);
            iat.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
        });
        let claims = Outgoing { user_id, iat, exp };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing a user token: {e}")))?;
        Ok(Issued {
            token,
            issued_at: iat * MICROS_PER_SECOND,
            expires_at: exp.map(|e| e.saturating_mul(MICROS_PER_SECOND)),
        })
    }

    /// Checks the signature (HS256 with this secret only), then `exp`, `nbf` and `iat` at `now`
    /// with this signer's leeway. Every refusal is in roster's words.
    pub fn verify(&self, token: &str, now: Micros) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::invalid(
                "token",
                format!("must be at most {MAX_TOKEN_BYTES} bytes"),
            ));
        }
        let invalid = |why: &str| Error::TokenRejected(TokenRejection::Invalid(why.to_owned()));
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
                .map_err(|e| invalid(describe_decode_error(e.kind())))?;
        let claims = data.claims;
        let Some(Value::String(user_id)) = claims.get("user_id") else {
            return Err(invalid("the claims have no `user_id` string"));
        };
        if id_problem(user_id).is_some() {
            return Err(invalid("`user_id` is not a valid user id"));
        }
        let user_id = user_id.clone();
        let times = TimeClaims::read(&claims).map_err(|p| invalid(p.describe()))?;
        match times.check(now, self.leeway) {
            Ok(()) => {}
            Err(TimeProblem::Expired) => {
                return Err(Error::TokenRejected(TokenRejection::Expired(user_id)));
            }
            Err(problem @ (TimeProblem::NotYetValid | TimeProblem::IssuedInTheFuture)) => {
                return Err(Error::TokenRejected(TokenRejection::NotYetValid(
                    problem.describe(),
                )));
            }
            Err(problem @ TimeProblem::Malformed(_)) => return Err(invalid(problem.describe())),
        }
        Ok(Claims {
            user_id,
            issued_at: times.issued_at,
            expires_at: times.expires_at,
        })
    }
}

/// Whether the user a valid token names may act at `now`: it must exist, the token must not be
/// revoked, and the user must be neither deleted, deactivated nor banned (a shadow ban does not
/// stop it: that is the point of a shadow ban).
pub fn admit(claims: &Claims, user: Option<&User>, now: Micros) -> Result<(), Error> {
    let Some(user) = user else {
        return Err(Error::TokenRejected(TokenRejection::UnknownUser(
            claims.user_id.clone(),
        )));
    };
    if let Some(revoked) = user.revoke_tokens_issued_before
        && claims.issued_at.is_none_or(|iat| iat < revoked)
    {
        return Err(Error::TokenRejected(TokenRejection::Revoked(
            claims.user_id.clone(),
        )));
    }
    let forbidden = if user.deleted_at.is_some() {
        Some(Forbidden::Deleted)
    } else if user.deactivated_at.is_some() {
        Some(Forbidden::Deactivated)
    } else if user.ban_in_force(now).is_some_and(|ban| !ban.shadow) {
        Some(Forbidden::Banned)
    } else {
        None
    };
    match forbidden {
        Some(reason) => Err(Error::UserForbidden {
            user_id: claims.user_id.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::moderation::Ban;
    use crate::domain::user::UserFields;

    const NOW: Micros = 1_767_323_045_500_000;

    fn tokens(secret: &str) -> UserTokens {
        UserTokens::new(secret.as_bytes()).unwrap()
    }

    fn rejection(result: Result<Claims, Error>) -> TokenRejection {
        match result {
            Err(Error::TokenRejected(r)) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(UserTokens::new(&[7; 31]).is_err());
        assert!(UserTokens::new(&[7; 32]).is_ok());
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let t = tokens("a-secret-of-at-least-thirty-two-bytes");
        let issued = t
            .issue("u1", NOW, Some(Duration::from_secs(60)), None)
            .unwrap();
        assert_eq!(issued.issued_at, 1_767_323_045_000_000);
        assert_eq!(issued.expires_at, Some(1_767_323_105_000_000));
        let claims = t.verify(&issued.token, NOW).unwrap();
        assert_eq!(claims.user_id, "u1");
        assert_eq!(claims.issued_at, Some(issued.issued_at));
        let leeway = 5_000_000;
        assert!(t.verify(&issued.token, 1_767_323_105_000_000).is_ok());
        assert!(
            t.verify(&issued.token, 1_767_323_105_000_000 + leeway - 1)
                .is_ok()
        );
        assert_eq!(
            rejection(t.verify(&issued.token, 1_767_323_105_000_000 + leeway)),
            TokenRejection::Expired("u1".into())
        );
        let forever = t.issue("u1", NOW, None, None).unwrap();
        assert_eq!(forever.expires_at, None);
        assert!(t.verify(&forever.token, i64::MAX / 2).is_ok());
    }

    #[test]
    fn another_secret_or_garbage_is_invalid() {
        let ours = tokens("a-secret-of-at-least-thirty-two-bytes");
        let theirs = tokens("another-secret-of-thirty-two-bytes!!");
        let token = theirs.issue("u1", NOW, None, None).unwrap().token;
        assert!(matches!(
            rejection(ours.verify(&token, NOW)),
            TokenRejection::Invalid(_)
        ));
        assert!(matches!(
            rejection(ours.verify("not.a.jwt", NOW)),
            TokenRejection::Invalid(_)
        ));
        assert!(matches!(
            ours.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), NOW),
            Err(Error::InvalidArgument(_))
        ));
    }

    fn times(claims: serde_json::Value) -> Result<TimeClaims, TimeProblem> {
        TimeClaims::read(claims.as_object().unwrap())
    }

    #[test]
    fn time_claims_must_be_numeric_dates() {
        let read = times(serde_json::json!({"iat": 1.5, "exp": 2, "nbf": -3})).unwrap();
        assert_eq!(read.issued_at, Some(1_500_000));
        assert_eq!(read.expires_at, Some(2_000_000));
        assert_eq!(read.not_before, Some(-3_000_000));
        assert_eq!(times(serde_json::json!({})), Ok(TimeClaims::default()));
        for (claim, name) in [("nbf", "nbf"), ("iat", "iat"), ("exp", "exp")] {
            for bad in [
                serde_json::json!("x"),
                serde_json::json!(null),
                serde_json::json!(true),
                serde_json::json!([1]),
                serde_json::json!(1e300),
            ] {
                let claims = serde_json::json!({ claim: bad });
                assert_eq!(times(claims), Err(TimeProblem::Malformed(name)), "{claim}");
            }
        }
    }

    #[test]
    fn every_time_limit_is_widened_by_the_leeway_and_no_more() {
        let leeway = Duration::from_secs(5);
        let l = 5_000_000;
        let at = |exp, nbf, iat| TimeClaims {
            expires_at: exp,
            not_before: nbf,
            issued_at: iat,
        };
        assert_eq!(at(Some(NOW - l + 1), None, None).check(NOW, leeway), Ok(()));
        assert_eq!(
            at(Some(NOW - l), None, None).check(NOW, leeway),
            Err(TimeProblem::Expired)
        );
        assert_eq!(at(None, Some(NOW + l), None).check(NOW, leeway), Ok(()));
        assert_eq!(
            at(None, Some(NOW + l + 1), None).check(NOW, leeway),
            Err(TimeProblem::NotYetValid)
        );
        assert_eq!(at(None, None, Some(NOW + l)).check(NOW, leeway), Ok(()));
        assert_eq!(
            at(None, None, Some(NOW + l + 1)).check(NOW, leeway),
            Err(TimeProblem::IssuedInTheFuture)
        );
        assert_eq!(
            at(Some(NOW), None, None).check(NOW, Duration::ZERO),
            Err(TimeProblem::Expired)
        );
    }

    #[test]
    fn lifetimes_are_bounded() {
        let t = tokens("a-secret-of-at-least-thirty-two-bytes");
        assert!(t.issue("u1", NOW, Some(Duration::ZERO), None).is_err());
        assert!(
            t.issue(
                "u1",
                NOW,
                Some(MAX_TOKEN_LIFETIME + Duration::from_secs(1)),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn a_token_issued_in_the_second_of_a_revocation_is_not_revoked_by_it() {
        let t = tokens("a-secret-of-at-least-thirty-two-bytes");
        let revoked = NOW - 100_000;
        let issued = t.issue("u1", NOW, None, Some(revoked)).unwrap();
        assert!(issued.issued_at >= revoked);
        let mut user = User::new(UserFields::with_id("u1"), 0);
        user.revoke_tokens_issued_before = Some(revoked);
        let claims = t.verify(&issued.token, NOW).unwrap();
        assert!(admit(&claims, Some(&user), NOW).is_ok());
        let older = t.issue("u1", revoked - 2_000_000, None, None).unwrap();
        let claims = t.verify(&older.token, NOW).unwrap();
        assert!(matches!(
            admit(&claims, Some(&user), NOW),
            Err(Error::TokenRejected(TokenRejection::Revoked(_)))
        ));
    }

    #[test]
    fn admission_follows_the_user_state() {
        let claims = Claims {
            user_id: "u1".into(),
            issued_at: Some(NOW),
            expires_at: None,
        };
        let forbidden = |user: &User| match admit(&claims, Some(user), NOW) {
            Err(Error::UserForbidden { reason, .. }) => Some(reason),
            Ok(()) => None,
            Err(other) => panic!("{other:?}"),
        };
        let mut user = User::new(UserFields::with_id("u1"), 0);
        assert_eq!(forbidden(&user), None);
        user.ban = Some(Ban {
            banned_at: NOW - 10,
            expires: Some(NOW + 10),
            reason: None,
            shadow: true,
            banned_by_id: None,
        });
        assert_eq!(forbidden(&user), None, "a shadow ban lets the user act");
        user.ban.as_mut().unwrap().shadow = false;
        assert_eq!(forbidden(&user), Some(Forbidden::Banned));
        user.ban.as_mut().unwrap().expires = Some(NOW);
        assert_eq!(forbidden(&user), None, "an expired ban does not count");
        user.deactivated_at = Some(1);
        assert_eq!(forbidden(&user), Some(Forbidden::Deactivated));
        user.deleted_at = Some(1);
        assert_eq!(forbidden(&user), Some(Forbidden::Deleted));
        assert!(matches!(
            admit(&claims, None, NOW),
            Err(Error::TokenRejected(TokenRejection::UnknownUser(_)))
        ));
        let mut revoked = User::new(UserFields::with_id("u1"), 0);
        revoked.revoke_tokens_issued_before = Some(1);
        let without_iat = Claims {
            issued_at: None,
            ..claims.clone()
        };
        assert!(matches!(
            admit(&without_iat, Some(&revoked), NOW),
            Err(Error::TokenRejected(TokenRejection::Revoked(_)))
        ));
    }
}
