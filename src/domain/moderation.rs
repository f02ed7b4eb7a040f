//! Bans and blocks: what a request may ask for, and when a ban is in force.
use super::ids::id_problem;
use super::paging;
use super::time::Micros;
use crate::error::{Error, FieldViolation};

/// Longest ban with an expiry (about ten years); a longer ban is a ban without expiry
/// (`timeout` 0). Keeps `ban_expires` within what a protobuf Timestamp can carry.
pub const MAX_BAN_TIMEOUT_MINUTES: u32 = 10 * 365 * 24 * 60;
pub const MAX_BAN_REASON_CHARS: usize = 1000;
/// Most users one user may block. Every returned user carries its `blocked_user_ids`, so the
/// list must stay small enough to ship with it.
pub const MAX_BLOCKS_PER_USER: usize = 1000;
pub const DEFAULT_BAN_PAGE: u64 = 30;
pub const MAX_BAN_PAGE: u64 = 100;

/// A user's ban as stored. It stays after it expires (QueryBannedUsers lists it) until
/// UnbanUser or a new ban replaces it; whether it still counts is [`Ban::in_force`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub banned_at: Micros,
    /// `None`: no expiry.
    pub expires: Option<Micros>,
    pub reason: Option<String>,
    /// A shadow ban: the user may go on acting, products hide what it does.
    pub shadow: bool,
    pub banned_by_id: Option<String>,
}

impl Ban {
    /// The same ban, made at `now` instead: its expiry moves with it. (A request is checked before
    /// the user is locked, and the ban is made once it is.)
    pub fn made_at(self, now: Micros) -> Ban {
        let later = now.saturating_sub(self.banned_at);
        Ban {
            banned_at: now,
            expires: self.expires.map(|expires| expires.saturating_add(later)),
            ..self
        }
    }

    /// The ban counts until (not including) its expiry.
    pub fn in_force(&self, at: Micros) -> bool {
        self.expires.is_none_or(|expires| at < expires)
    }
}

/// A BanUser request.
#[derive(Debug, Clone, Default)]
pub struct BanRequest {
    pub target_user_id: String,
    /// Minutes until the ban expires; 0 means never.
    pub timeout_minutes: u32,
    pub reason: Option<String>,
    pub shadow: bool,
    pub banned_by_id: Option<String>,
}

impl BanRequest {
    /// Checks the request and gives the ban it makes at `now`.
    pub fn ban(self, now: Micros) -> Result<Ban, Error> {
        let mut bad = Vec::new();
        if let Some(problem) = id_problem(&self.target_user_id) {
            bad.push(FieldViolation::new("target_user_id", problem));
        }
        if self.timeout_minutes > MAX_BAN_TIMEOUT_MINUTES {
            bad.push(FieldViolation::new(
                "timeout",
                format!(
                    "at most {MAX_BAN_TIMEOUT_MINUTES} minutes (about ten years), got {}; 0 bans without expiry",
                    self.timeout_minutes
                ),
            ));
        }
        let reason = self.reason.filter(|r| !r.is_empty());
        if let Some(reason) = &reason
            && (reason.chars().count() > MAX_BAN_REASON_CHARS || reason.contains('\0'))
        {
            bad.push(FieldViolation::new(
                "reason",
                format!("must be at most {MAX_BAN_REASON_CHARS} characters, without NUL"),
            ));
        }
        if let Some(problem) = self.banned_by_id.as_deref().and_then(id_problem) {
            bad.push(FieldViolation::new("banned_by_id", problem));
        }
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        let expires = (self.timeout_minutes > 0)
            .then(|| now.saturating_add(i64::from(self.timeout_minutes) * 60_000_000));
        Ok(Ban {
            banned_at: now,
            expires,
            reason,
            shadow: self.shadow,
            banned_by_id: self.banned_by_id,
        })
    }
}

/// One block: `user_id` has blocked `blocked_user_id` since `created_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub user_id: String,
    pub blocked_user_id: String,
    pub created_at: Micros,
}

/// Checks a block or unblock request: two valid, different ids.
pub fn check_block(user_id: &str, blocked_user_id: &str) -> Result<(), Error> {
    let mut bad = Vec::new();
    if let Some(problem) = id_problem(user_id) {
        bad.push(FieldViolation::new("user_id", problem));
    }
    if let Some(problem) = id_problem(blocked_user_id) {
        bad.push(FieldViolation::new("blocked_user_id", problem));
    }
    if bad.is_empty() && user_id == blocked_user_id {
        bad.push(FieldViolation::new(
            "blocked_user_id",
            "a user cannot block itself",
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(bad))
    }
}

/// A QueryBannedUsers request, checked. Bans come newest first (`banned_at`, then user id,
/// both descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanQuery {
    pub exclude_expired: bool,
    pub limit: u64,
    /// `(banned_at, user id)` of the last ban of the previous page.
    pub after: Option<(Micros, String)>,
}

impl BanQuery {
    pub fn parse(exclude_expired: bool, limit: u32, page_token: &str) -> Result<Self, Error> {
        let limit = paging::page_size(limit, DEFAULT_BAN_PAGE, MAX_BAN_PAGE)?;
        let after = match paging::decode::<(Micros, String)>(page_token)? {
            Some((at, id)) if id_problem(&id).is_none() => Some((at, id)),
            Some(_) => return Err(paging::not_a_token()),
            None => None,
        };
        Ok(BanQuery {
            exclude_expired,
            limit,
            after,
        })
    }
}

/// The page token that continues after the ban of `user_id` made at `banned_at`.
pub fn ban_page_token(banned_at: Micros, user_id: &str) -> String {
    paging::encode(&(banned_at, user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(timeout_minutes: u32) -> BanRequest {
        BanRequest {
            target_user_id: "u1".into(),
            timeout_minutes,
            ..Default::default()
        }
    }

    #[test]
    fn a_ban_with_a_timeout_ends_at_its_expiry() {
        let ban = request(2).ban(1_000).unwrap();
        assert_eq!(ban.expires, Some(1_000 + 120_000_000));
        assert!(ban.in_force(1_000 + 119_999_999));
        assert!(!ban.in_force(1_000 + 120_000_000));
        let forever = request(0).ban(1_000).unwrap();
        assert_eq!(forever.expires, None);
        assert!(forever.in_force(i64::MAX));
    }

    #[test]
    fn a_ban_made_later_keeps_its_length() {
        let ban = request(2).ban(1_000).unwrap().made_at(5_000);
        assert_eq!(ban.banned_at, 5_000);
        assert_eq!(ban.expires, Some(5_000 + 120_000_000));
        let forever = request(0).ban(1_000).unwrap().made_at(5_000);
        assert_eq!((forever.banned_at, forever.expires), (5_000, None));
    }

    #[test]
    fn ban_requests_are_checked() {
        assert!(request(MAX_BAN_TIMEOUT_MINUTES).ban(0).is_ok());
        assert!(request(MAX_BAN_TIMEOUT_MINUTES + 1).ban(0).is_err());
        let mut bad = request(0);
        bad.target_user_id = "no spaces".into();
        bad.reason = Some("x".repeat(MAX_BAN_REASON_CHARS + 1));
        bad.banned_by_id = Some(String::new());
        let Err(Error::InvalidArgument(v)) = bad.ban(0) else {
            panic!("expected violations");
        };
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["target_user_id", "reason", "banned_by_id"]);
        let mut empty_reason = request(0);
        empty_reason.reason = Some(String::new());
        assert_eq!(empty_reason.ban(0).unwrap().reason, None);
    }

    #[test]
    fn nobody_blocks_itself() {
        assert!(check_block("a", "b").is_ok());
        assert!(check_block("a", "a").is_err());
        assert!(check_block("a", "").is_err());
    }

    #[test]
    fn ban_page_tokens_round_trip_and_forgeries_are_refused() {
        let token = ban_page_token(1_767_323_045_123_456, "u-1@x");
        let q = BanQuery::parse(true, 0, &token).unwrap();
        assert_eq!(q.after, Some((1_767_323_045_123_456, "u-1@x".into())));
        assert_eq!(q.limit, DEFAULT_BAN_PAGE);
        assert!(BanQuery::parse(false, 101, "").is_err());
        assert!(BanQuery::parse(false, 10, "not base64!").is_err());
        // Well-formed, but the id is none a user could have.
        let forged = paging::encode(&(12, "bad id\u{0}"));
        assert!(BanQuery::parse(false, 10, &forged).is_err());
    }
}
