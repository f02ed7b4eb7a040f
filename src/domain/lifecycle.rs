//! Deactivation, reactivation, deletion and restoration: the options and their rules.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, FieldViolation};

/// Most users one lifecycle request names.
pub const MAX_LIFECYCLE_IDS: usize = 100;

/// What products hear for a user.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LifecycleEvent {
    Deactivated,
    Reactivated,
    Deleted,
    Restored,
}

impl LifecycleEvent {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How much of a deleted user roster keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserDeletion {
    /// Marked deleted; every field kept; restorable.
    #[default]
    Soft,
    /// Marked deleted; name, image, custom, teams, devices and blocks nullified; not restorable.
    Pruning,
    /// Removed with everything roster holds about it; the id is free again.
    Hard,
}

/// How products treat a deleted user's content (messages accept `pruning` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentDeletion {
    Soft,
    Pruning,
    Hard,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeleteOptions {
    pub user: UserDeletion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<ContentDeletion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<ContentDeletion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<ContentDeletion>,
    #[serde(default)]
    pub files: bool,
    /// Explicit, or `None` for the per-user system id (see [`system_owner_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_channel_owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_call_owner_id: Option<String>,
}

/// The options as strings, as the API takes them (empty = absent).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptionsInput {
    pub user: String,
    pub conversations: String,
    pub messages: String,
    pub calls: String,
    pub files: bool,
    pub new_channel_owner_id: String,
    pub new_call_owner_id: String,
}

impl DeleteOptionsInput {
    pub fn parse(self) -> Result<DeleteOptions, Error> {
        let mut bad = Vec::new();
        fn mode<M: serde::de::DeserializeOwned>(
            field: &str,
            text: &str,
            allowed: &[&str],
            bad: &mut Vec<FieldViolation>,
        ) -> Option<M> {
            if text.is_empty() {
                return None;
            }
            if !allowed.contains(&text) {
                bad.push(FieldViolation::new(
                    field,
                    format!("must be one of {}, got {text:?}", allowed.join(", ")),
                ));
                return None;
            }
            serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
        }
        let user: UserDeletion = if self.user.is_empty() {
            UserDeletion::Soft
        } else {
            mode("user", &self.user, &["soft", "pruning", "hard"], &mut bad).unwrap_or_default()
        };
        let conversations = mode(
            "conversations",
            &self.conversations,
            &["soft", "hard"],
            &mut bad,
        );
        let messages = mode(
            "messages",
            &self.messages,
            &["soft", "pruning", "hard"],
            &mut bad,
        );
        let calls = mode("calls", &self.calls, &["soft", "hard"], &mut bad);
        if user == UserDeletion::Hard {
            if messages != Some(ContentDeletion::Hard) {
                bad.push(FieldViolation::new(
                    "messages",
                    "must be \"hard\" when user is \"hard\"",
                ));
            }
            if conversations != Some(ContentDeletion::Hard) {
                bad.push(FieldViolation::new(
                    "conversations",
                    "must be \"hard\" when user is \"hard\"",
                ));
            }
        }
        for (field, id) in [
            ("new_channel_owner_id", &self.new_channel_owner_id),
            ("new_call_owner_id", &self.new_call_owner_id),
        ] {
            if let Some(problem) = (!id.is_empty())
                .then(|| super::ids::id_problem(id))
                .flatten()
            {
                bad.push(FieldViolation::new(field, problem));
            }
        }
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        let some = |s: String| (!s.is_empty()).then_some(s);
        Ok(DeleteOptions {
            user,
            conversations,
            messages,
            calls,
            files: self.files,
            new_channel_owner_id: some(self.new_channel_owner_id),
            new_call_owner_id: some(self.new_call_owner_id),
        })
    }
}

/// Who inherits what a hard-deleted user owned when the caller names nobody: a deterministic
/// system id, `delete-user-<first 16 hex digits of SHA-256 of the user id>`.
pub fn system_owner_id(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("delete-user-{hex}")
}

/// Checks a lifecycle request's ids: 1 to 100, each valid, no duplicates.
pub fn check_ids(ids: &[String]) -> Result<(), Error> {
    if ids.is_empty() || ids.len() > MAX_LIFECYCLE_IDS {
        return Err(Error::invalid(
            "user_ids",
            format!("must hold 1 to {MAX_LIFECYCLE_IDS} ids, got {}", ids.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut bad = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(problem) = super::ids::id_problem(id) {
            bad.push(FieldViolation::new(format!("user_ids[{i}]"), problem));
        } else if !seen.insert(id) {
            bad.push(FieldViolation::new(
                format!("user_ids[{i}]"),
                format!("{id:?} appears twice"),
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: &str, messages: &str, conversations: &str) -> DeleteOptionsInput {
        DeleteOptionsInput {
            user: user.into(),
            messages: messages.into(),
            conversations: conversations.into(),
            ..Default::default()
        }
    }

    #[test]
    fn hard_requires_hard_messages_and_conversations() {
        assert!(input("hard", "", "").parse().is_err());
        assert!(input("hard", "hard", "soft").parse().is_err());
        let ok = input("hard", "hard", "hard").parse().unwrap();
        assert_eq!(ok.user, UserDeletion::Hard);
        assert_eq!(input("", "", "").parse().unwrap().user, UserDeletion::Soft);
        assert!(input("sideways", "", "").parse().is_err());
        assert!(input("soft", "", "pruning").parse().is_err());
    }

    #[test]
    fn lifecycle_events_are_spelled_as_products_and_stored_payloads_know_them() {
        use strum::IntoEnumIterator;
        let names: Vec<&str> = LifecycleEvent::iter().map(LifecycleEvent::as_str).collect();
        assert_eq!(names, ["deactivated", "reactivated", "deleted", "restored"]);
        for event in LifecycleEvent::iter() {
            let json = serde_json::to_value(event).expect("serializes");
            assert_eq!(
                json,
                serde_json::json!(event.as_str()),
                "serde and strum agree"
            );
        }
    }

    #[test]
    fn system_owner_is_deterministic() {
        assert_eq!(system_owner_id("u1"), system_owner_id("u1"));
        assert_ne!(system_owner_id("u1"), system_owner_id("u2"));
        assert!(system_owner_id("u1").starts_with("delete-user-"));
        assert_eq!(system_owner_id("u1").len(), "delete-user-".len() + 16);
    }
}
