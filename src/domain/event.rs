//! The change feed's vocabulary: who acted, what happened.
use super::time::Micros;
use super::user::User;

/// Who made a change: the authenticated calling service (if any) and the request's
/// `created_by_id` (if given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub caller: Option<String>,
    pub created_by_id: Option<String>,
}

impl Actor {
    pub fn new(caller: Option<String>, created_by_id: Option<String>) -> Self {
        Actor {
            caller,
            created_by_id,
        }
    }

    /// `created_by_id` where given, else the calling service, else `server`.
    pub fn name(&self) -> &str {
        self.created_by_id
            .as_deref()
            .or(self.caller.as_deref())
            .unwrap_or("server")
    }
}

/// What happened. The strings are stored in `user_events.kind` and shown on the wire.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
pub enum EventKind {
    #[strum(serialize = "user.created")]
    UserCreated,
    #[strum(serialize = "user.updated")]
    UserUpdated,
    #[strum(serialize = "user.deactivated")]
    UserDeactivated,
    #[strum(serialize = "user.reactivated")]
    UserReactivated,
    #[strum(serialize = "user.deleted")]
    UserDeleted,
    #[strum(serialize = "user.restored")]
    UserRestored,
    #[strum(serialize = "user.pruned")]
    UserPruned,
    #[strum(serialize = "user.hard_deleted")]
    UserHardDeleted,
    #[strum(serialize = "user.banned")]
    UserBanned,
    #[strum(serialize = "user.unbanned")]
    UserUnbanned,
    #[strum(serialize = "user.blocked")]
    UserBlocked,
    #[strum(serialize = "user.unblocked")]
    UserUnblocked,
    #[strum(serialize = "user.device_added")]
    UserDeviceAdded,
    #[strum(serialize = "user.device_removed")]
    UserDeviceRemoved,
    #[strum(serialize = "user.tokens_revoked")]
    UserTokensRevoked,
    #[strum(serialize = "role.created")]
    RoleCreated,
    #[strum(serialize = "role.deleted")]
    RoleDeleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// `str::parse`, for callers that want an `Option`.
    pub fn parse(text: &str) -> Option<EventKind> {
        text.parse().ok()
    }
}

/// One event of the feed, as followers receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub sequence: i64,
    pub kind: EventKind,
    pub user_id: String,
    pub actor: Actor,
    pub at: Micros,
    /// The user after the change (absent for hard deletions and role events).
    pub user: Option<User>,
    pub role: Option<String>,
}

/// Which events a follower wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kinds: Vec<EventKind>,
    pub user_ids: Vec<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.user_ids.is_empty() || self.user_ids.contains(&event.user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_prefers_created_by_then_caller() {
        assert_eq!(Actor::default().name(), "server");
        assert_eq!(Actor::new(Some("chat".into()), None).name(), "chat");
        assert_eq!(
            Actor::new(Some("chat".into()), Some("admin-1".into())).name(),
            "admin-1"
        );
    }

    /// Stored in `user_events.kind` and shown on the wire: these strings never change.
    #[test]
    fn kind_strings_are_pinned() {
        use strum::IntoEnumIterator;
        let kinds: Vec<&str> = EventKind::iter().map(EventKind::as_str).collect();
        assert_eq!(
            kinds,
            [
                "user.created",
                "user.updated",
                "user.deactivated",
                "user.reactivated",
                "user.deleted",
                "user.restored",
                "user.pruned",
                "user.hard_deleted",
                "user.banned",
                "user.unbanned",
                "user.blocked",
                "user.unblocked",
                "user.device_added",
                "user.device_removed",
                "user.tokens_revoked",
                "role.created",
                "role.deleted",
            ]
        );
        for kind in EventKind::iter() {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(EventKind::parse("user.exploded"), None);
    }
}
