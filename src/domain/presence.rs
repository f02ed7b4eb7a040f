//! Presence: `last_active` moves on each successful token verification; `online` is derived from
//! it whenever a user is read, never stored.
use std::time::Duration;

use super::time::Micros;
use super::user::User;

pub const DEFAULT_PRESENCE_WINDOW: Duration = Duration::from_secs(60);

/// How long a user counts as online after it was last active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    window: Micros,
}

impl Default for Presence {
    fn default() -> Self {
        Presence::new(DEFAULT_PRESENCE_WINDOW)
    }
}

impl Presence {
    /// A window of at least one second.
    pub fn new(window: Duration) -> Self {
        let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        Presence {
            window: window.max(1_000_000),
        }
    }

    /// Online: active within the window, and not hiding.
    pub fn online(&self, user: &User, at: Micros) -> bool {
        !user.fields.invisible
            && user
                .last_active
                .is_some_and(|last| last <= at && at - last < self.window)
    }

    /// The earliest `last_active` that is still online at `at` (a filter's bound): online means
    /// `online_since(at) <= last_active <= at`, and not invisible.
    pub fn online_since(&self, at: Micros) -> Micros {
        at.saturating_sub(self.window).saturating_add(1)
    }

    /// Whether an activity at `now` should be written. A user verifying tokens all the time
    /// costs one write per quarter window, not one per call; `last_active` then lags by at most
    /// that much, which keeps an active user online throughout.
    pub fn needs_write(&self, last_active: Option<Micros>, now: Micros) -> bool {
        last_active.is_none_or(|last| now - last >= self.window / 4)
    }
}

/// The instant a user is looked at: bans past their expiry no longer count and presence fades,
/// so turning a stored user into what a caller sees needs both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    pub at: Micros,
    pub presence: Presence,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::user::UserFields;

    #[test]
    fn online_within_the_window_unless_invisible() {
        let presence = Presence::new(Duration::from_secs(60));
        let mut user = User::new(UserFields::with_id("u1"), 0);
        assert!(!presence.online(&user, 0), "never active");
        user.last_active = Some(1_000_000);
        assert!(presence.online(&user, 1_000_000));
        assert!(presence.online(&user, 60_999_999));
        assert!(!presence.online(&user, 61_000_000));
        user.fields.invisible = true;
        assert!(!presence.online(&user, 1_000_000));
    }

    #[test]
    fn activity_is_written_at_most_once_per_quarter_window() {
        let presence = Presence::new(Duration::from_secs(60));
        assert!(presence.needs_write(None, 0));
        assert!(!presence.needs_write(Some(0), 14_999_999));
        assert!(presence.needs_write(Some(0), 15_000_000));
    }
}
