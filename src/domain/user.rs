//! The user as roster's rules see it, and the validation every write goes through.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::device::Device;
use super::moderation::Ban;

use super::ids::id_problem;
use super::time::Micros;
use crate::error::Error;

/// A stored user: caller-set fields plus the fields roster manages.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub fields: UserFields,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub deactivated_at: Option<Micros>,
    pub deleted_at: Option<Micros>,
    pub last_active: Option<Micros>,
    pub revoke_tokens_issued_before: Option<Micros>,
    pub avg_response_time: Option<i32>,
    /// Set when the user was pruned or hard-deleted (it can no longer be restored).
    pub pruned_at: Option<Micros>,
    /// The user's ban, in force or expired; see [`User::ban_in_force`].
    pub ban: Option<Ban>,
    /// Oldest first.
    pub devices: Vec<Device>,
    /// Oldest block first.
    pub blocked_user_ids: Vec<String>,
}

/// What a caller sets: the whole of a replace, the result of a partial update.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserFields {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub role: String,
    pub custom: Map<String, Value>,
    pub language: String,
    pub invisible: bool,
    pub teams: Vec<String>,
    pub teams_role: BTreeMap<String, String>,
    pub privacy_settings: Option<PrivacySettings>,
    pub push_notifications: Option<PushNotifications>,
}

/// Stored as `{"typing_indicators": {"enabled": true}, ...}`; an absent entry is "product default".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing_indicators: Option<PrivacySetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_receipts: Option<PrivacySetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_receipts: Option<PrivacySetting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySetting {
    #[serde(default)]
    pub enabled: bool,
}

/// Stored as `{"disabled": bool, "disabled_until": micros}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushNotifications {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_until: Option<Micros>,
}

/// Field names a caller sets (UpdateUsers, UpdateUsersPartial `set`/`unset`).
pub const CALLER_FIELDS: [&str; 10] = [
    "name",
    "image",
    "role",
    "language",
    "invisible",
    "teams",
    "teams_role",
    "privacy_settings",
    "push_notifications",
    "revoke_tokens_issued_before",
];

/// Field names roster manages; a partial update may not name them.
pub const SERVER_FIELDS: [&str; 16] = [
    "id",
    "created_at",
    "updated_at",
    "deactivated_at",
    "deleted_at",
    "banned",
    "ban_expires",
    "shadow_banned",
    "blocked_user_ids",
    "devices",
    "online",
    "last_active",
    "avg_response_time",
    "ban_reason",
    "deleted",
    "deactivated",
];

/// Caller data (custom plus the caller-set fields) per user, serialized.
/// Most users one batch call (UpdateUsers, UpdateUsersPartial, RevokeUserTokens) carries.
pub const MAX_BATCH: usize = 100;

/// A batch of `len` users: 1 to [`MAX_BATCH`].
pub fn check_batch(len: usize) -> Result<(), Error> {
    if len == 0 || len > MAX_BATCH {
        return Err(Error::invalid(
            "users",
            format!("must hold 1 to {MAX_BATCH} users, got {len}"),
        ));
    }
    Ok(())
}

pub const MAX_CALLER_DATA_BYTES: usize = 5 * 1024;
pub const MAX_LANGUAGE_CHARS: usize = 16;
pub const MAX_TEAMS: usize = 100;
pub const MAX_TEAM_CHARS: usize = 255;
/// Nesting depth of custom data; deeper documents are refused before they reach the database.
pub const MAX_CUSTOM_DEPTH: usize = 32;

/// How a role may be used, as the store knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleScope {
    Global,
    Channel,
}

impl UserFields {
    /// A new user with every caller field at its default.
    pub fn with_id(id: impl Into<String>) -> Self {
        UserFields {
            id: id.into(),
            role: "user".into(),
            ..Default::default()
        }
    }

    /// Checks every rule that needs nothing but the fields themselves. `at` prefixes each
    /// violation's field path (`users[u1]`).
    pub fn violations(&self, at: &str) -> Vec<crate::error::FieldViolation> {
        use crate::error::FieldViolation as V;
        let mut out = Vec::new();
        if let Some(problem) = id_problem(&self.id) {
            out.push(V::new(format!("{at}.id"), problem));
        }
        for (field, value) in [("name", &self.name), ("image", &self.image)] {
            if value.as_deref().is_some_and(|v| v.contains('\0')) {
                out.push(V::new(format!("{at}.{field}"), "must not contain NUL"));
            }
        }
        if self.role.is_empty() {
            out.push(V::new(format!("{at}.role"), "must not be empty"));
        }
        if self.language.chars().count() > MAX_LANGUAGE_CHARS || self.language.contains('\0') {
            out.push(V::new(
                format!("{at}.language"),
                format!("must be at most {MAX_LANGUAGE_CHARS} characters, without NUL"),
            ));
        }
        if self.teams.len() > MAX_TEAMS {
            out.push(V::new(
                format!("{at}.teams"),
                format!("at most {MAX_TEAMS} teams"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, team) in self.teams.iter().enumerate() {
            let chars = team.chars().count();
            if chars == 0 || chars > MAX_TEAM_CHARS || team.contains('\0') {
                out.push(V::new(
                    format!("{at}.teams[{i}]"),
                    format!("must be 1 to {MAX_TEAM_CHARS} characters, without NUL"),
                ));
            } else if !seen.insert(team.as_str()) {
                out.push(V::new(
                    format!("{at}.teams[{i}]"),
                    format!("duplicate team {team:?}"),
                ));
            }
        }
        for key in self.teams_role.keys() {
            if !self.teams.iter().any(|t| t == key) {
                out.push(V::new(
                    format!("{at}.teams_role[{key}]"),
                    format!("team {key:?} is not one of the user's teams"),
                ));
            }
        }
        if let Some(problem) = object_problem(&self.custom, 0) {
            out.push(V::new(format!("{at}.custom"), problem));
        }
        let custom_bytes = json_len(&self.custom);
        if custom_bytes > MAX_CALLER_DATA_BYTES {
            out.push(V::new(
                format!("{at}.custom"),
                format!("is {custom_bytes} bytes serialized; at most {MAX_CALLER_DATA_BYTES}"),
            ));
        } else {
            let total = self.caller_data_bytes(custom_bytes);
            if total > MAX_CALLER_DATA_BYTES {
                out.push(V::new(
                    at.to_string(),
                    format!(
                        "caller data (custom plus caller fields) is {total} bytes serialized; at most {MAX_CALLER_DATA_BYTES}"
                    ),
                ));
            }
        }
        out
    }

    /// Every role these fields refer to (the global role and the team roles).
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.role.as_str()).chain(self.teams_role.values().map(String::as_str))
    }

    /// Checks the role and team roles against the roles that exist.
    pub fn role_violations(
        &self,
        at: &str,
        scope_of: impl Fn(&str) -> Option<RoleScope>,
    ) -> Vec<crate::error::FieldViolation> {
        use crate::error::FieldViolation as V;
        let mut out = Vec::new();
        match scope_of(&self.role) {
            Some(RoleScope::Global) => {}
            Some(RoleScope::Channel) => out.push(V::new(
                format!("{at}.role"),
                format!(
                    "role {:?} is channel-level and cannot be a user's role",
                    self.role
                ),
            )),
            None => out.push(V::new(
                format!("{at}.role"),
                format!("role {:?} does not exist", self.role),
            )),
        }
        for (team, role) in &self.teams_role {
            if scope_of(role).is_none() {
                out.push(V::new(
                    format!("{at}.teams_role[{team}]"),
                    format!("role {role:?} does not exist"),
                ));
            }
        }
        out
    }

    /// Serialized size of what the caller controls (the id excluded), given `custom`'s.
    fn caller_data_bytes(&self, custom_bytes: usize) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len());
        custom_bytes
            + opt(&self.name)
            + opt(&self.image)
            + self.role.len()
            + self.language.len()
            + self.teams.iter().map(|t| t.len() + 3).sum::<usize>()
            + self
                .teams_role
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>()
    }
}

/// Custom keys may not contain `.`, at any depth: filters, sort keys and partial updates read a
/// dot as a step into a nested object, so a dotted key could never be filtered, sorted or unset.
/// `at` names where `value` sits (`users[u1].custom`); the violation names the first such key's
/// place under it. Only what a request writes is checked: keys stored before this rule stay
/// readable and can be removed by replacing or unsetting what holds them.
pub fn dotted_key_violation(value: &Value, at: &str) -> Option<crate::error::FieldViolation> {
    match value {
        Value::Object(map) => dotted_key_violation_in(map, at),
        _ => {
            let mut steps = Vec::new();
            let key = first_dotted_key(value, &mut steps)?;
            Some(dotted_violation(at, &steps, key))
        }
    }
}

/// `dotted_key_violation` of an object's keys (a user's `custom`), without making a `Value` of it.
pub fn dotted_key_violation_in(
    map: &Map<String, Value>,
    at: &str,
) -> Option<crate::error::FieldViolation> {
    let mut steps = Vec::new();
    let key = first_dotted_key_in(map, &mut steps)?;
    Some(dotted_violation(at, &steps, key))
}

fn dotted_violation(at: &str, steps: &[Step<'_>], key: &str) -> crate::error::FieldViolation {
    let mut place = at.to_owned();
    for step in steps {
        match step {
            Step::Key(k) => {
                place.push('.');
                place.push_str(k);
            }
            Step::Index(i) => place.push_str(&format!("[{i}]")),
        }
    }
    crate::error::FieldViolation::new(
        place,
        format!(
            "key {key:?} contains `.`; custom keys may not, at any depth (a dot separates \
             the steps of a key path)"
        ),
    )
}

/// One step from a document to a value inside it.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The first key containing a dot under `value`, and in `steps` the way to the object holding
/// it. Nothing is allocated for a document without one: the way is only recorded on the way back.
fn first_dotted_key<'a>(value: &'a Value, steps: &mut Vec<Step<'a>>) -> Option<&'a str> {
    match value {
        Value::Object(map) => first_dotted_key_in(map, steps),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let key = first_dotted_key(v, steps)?;
            steps.insert(0, Step::Index(i));
            Some(key)
        }),
        _ => None,
    }
}

fn first_dotted_key_in<'a>(
    map: &'a Map<String, Value>,
    steps: &mut Vec<Step<'a>>,
) -> Option<&'a str> {
    map.iter().find_map(|(k, v)| {
        if k.contains('.') {
            return Some(k.as_str());
        }
        let key = first_dotted_key(v, steps)?;
        steps.insert(0, Step::Key(k));
        Some(key)
    })
}

/// Bytes of `value` serialized as JSON, counted as it is written: no text is kept, and no copy
/// of the document is made to measure it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(usize::MAX, |()| count.0)
}

/// NUL characters (refused by PostgreSQL text and jsonb) and excessive nesting.
fn json_problem(value: &Value, depth: usize) -> Option<String> {
    if depth > MAX_CUSTOM_DEPTH {
        return Some(format!("nests deeper than {MAX_CUSTOM_DEPTH} levels"));
    }
    match value {
        Value::String(s) if s.contains('\0') => Some("strings must not contain NUL".into()),
        Value::Array(items) => items.iter().find_map(|v| json_problem(v, depth + 1)),
        Value::Object(map) => object_problem(map, depth),
        _ => None,
    }
}

/// `json_problem` of an object at `depth` (a user's `custom` at 0), without making a `Value` of it.
fn object_problem(map: &Map<String, Value>, depth: usize) -> Option<String> {
    map.iter().find_map(|(k, v)| {
        if k.contains('\0') {
            Some("keys must not contain NUL".into())
        } else {
            json_problem(v, depth + 1)
        }
    })
}

impl User {
    /// A user created now with the given caller fields.
    pub fn new(fields: UserFields, now: Micros) -> Self {
        User {
            fields,
            created_at: now,
            updated_at: now,
            deactivated_at: None,
            deleted_at: None,
            last_active: None,
            revoke_tokens_issued_before: None,
            avg_response_time: None,
            pruned_at: None,
            ban: None,
            devices: Vec::new(),
            blocked_user_ids: Vec::new(),
        }
    }

    /// The ban that counts at `at`, if any: a ban past its expiry does not.
    pub fn ban_in_force(&self, at: Micros) -> Option<&Ban> {
        self.ban.as_ref().filter(|ban| ban.in_force(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_rules() {
        assert!(id_problem("user-1@x_y").is_none());
        assert!(id_problem(&"a".repeat(255)).is_none());
        assert!(id_problem(&"a".repeat(256)).is_some());
        assert!(id_problem("a b").is_some());
        assert!(id_problem("").is_some());
        assert!(id_problem("é").is_some());
    }

    #[test]
    fn custom_size_and_teams_rules() {
        let mut u = UserFields::with_id("u1");
        u.custom.insert("k".into(), json!("x".repeat(5 * 1024)));
        let v = u.violations("users[u1]");
        assert_eq!(v[0].field, "users[u1].custom");

        let mut u = UserFields::with_id("u1");
        u.teams = vec!["red".into()];
        u.teams_role.insert("blue".into(), "admin".into());
        let v = u.violations("users[u1]");
        assert_eq!(v[0].field, "users[u1].teams_role[blue]");
    }

    #[test]
    fn custom_is_measured_as_its_serialized_bytes_to_the_byte() {
        // `{"k":"…"}` is 8 bytes around the string.
        let sized = |bytes: usize| {
            let mut u = UserFields::with_id("u1");
            u.custom.insert("k".into(), json!("x".repeat(bytes - 8)));
            u.violations("users[u1]")
        };
        assert!(
            sized(MAX_CALLER_DATA_BYTES)
                .iter()
                .all(|v| v.field != "users[u1].custom")
        );
        let over = sized(MAX_CALLER_DATA_BYTES + 1);
        assert_eq!(over[0].field, "users[u1].custom");
        assert!(
            over[0].description.starts_with("is 5121 bytes serialized"),
            "{}",
            over[0].description
        );
        let doc = json!({"a": [1, "é\u{1}\"", {"b": null}], "c": 2.5});
        assert_eq!(json_len(&doc), serde_json::to_vec(&doc).unwrap().len());
    }

    #[test]
    fn dotted_custom_keys_are_named_by_their_place() {
        let at = "users[u1].custom";
        assert_eq!(
            dotted_key_violation(&json!({"a": {"b": [1, {"c": 2}]}}), at),
            None
        );
        let top = dotted_key_violation(&json!({"ok": 1, "a.b": 1}), at).unwrap();
        assert_eq!(top.field, "users[u1].custom");
        assert!(top.description.contains("\"a.b\""), "{}", top.description);
        let deep = dotted_key_violation(&json!({"x": {"list": [0, {"y.z": 1}]}}), at).unwrap();
        assert_eq!(deep.field, "users[u1].custom.x.list[1]");
        assert!(deep.description.contains("\"y.z\""), "{}", deep.description);
    }

    #[test]
    fn nul_and_depth_are_refused() {
        let mut u = UserFields::with_id("u1");
        u.custom.insert("k".into(), json!("a\u{0}b"));
        assert_eq!(u.violations("u").len(), 1);
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "d": deep });
        }
        let mut u = UserFields::with_id("u1");
        u.custom.insert("deep".into(), deep);
        assert_eq!(u.violations("u").len(), 1);
    }
}
