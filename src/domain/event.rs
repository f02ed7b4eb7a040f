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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    UserCreated,
    UserUpdated,
    UserDeactivated,
    UserReactivated,
    UserDeleted,
    UserRestored,
    UserPruned,
    UserHardDeleted,
    UserBanned,
    UserUnbanned,
    UserBlocked,
    UserUnblocked,
    UserDeviceAdded,
    UserDeviceRemoved,
    UserTokensRevoked,
    RoleCreated,
    RoleDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 17] = [
        EventKind::UserCreated,
        EventKind::UserUpdated,
        EventKind::UserDeactivated,
        EventKind::UserReactivated,
        EventKind::UserDeleted,
        EventKind::UserRestored,
        EventKind::UserPruned,
        EventKind::UserHardDeleted,
        EventKind::UserBanned,
        EventKind::UserUnbanned,
        EventKind::UserBlocked,
        EventKind::UserUnblocked,
        EventKind::UserDeviceAdded,
        EventKind::UserDeviceRemoved,
        EventKind::UserTokensRevoked,
        EventKind::RoleCreated,
        EventKind::RoleDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserCreated => "user.created",
            EventKind::UserUpdated => "user.updated",
            EventKind::UserDeactivated => "user.deactivated",
            EventKind::UserReactivated => "user.reactivated",
            EventKind::UserDeleted => "user.deleted",
            EventKind::UserRestored => "user.restored",
            EventKind::UserPruned => "user.pruned",
            EventKind::UserHardDeleted => "user.hard_deleted",
            EventKind::UserBanned => "user.banned",
            EventKind::UserUnbanned => "user.unbanned",
            EventKind::UserBlocked => "user.blocked",
            EventKind::UserUnblocked => "user.unblocked",
            EventKind::UserDeviceAdded => "user.device_added",
            EventKind::UserDeviceRemoved => "user.device_removed",
            EventKind::UserTokensRevoked => "user.tokens_revoked",
            EventKind::RoleCreated => "role.created",
            EventKind::RoleDeleted => "role.deleted",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
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

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("user.exploded"), None);
    }
}
