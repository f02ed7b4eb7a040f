//! Partial updates: `set` and `unset` keys resolved to paths, checked for conflicts, and applied to
//! a JSON view of the caller fields. The result goes through the same validation as a replace.
use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::event::EventKind;
use super::time::Micros;
use super::time::{format_rfc3339, parse_rfc3339};
use super::user::{
    CALLER_FIELDS, PrivacySettings, PushNotifications, RoleScope, SERVER_FIELDS, User, UserFields,
    dotted_key_violation,
};
use crate::error::{Error, FieldViolation};

/// One user's partial update, as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct PartialUpdate {
    pub id: String,
    pub set: Map<String, Value>,
    pub unset: Vec<String>,
}

/// The caller-settable state a partial update changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Settable {
    pub fields: UserFields,
    pub revoke_tokens_issued_before: Option<Micros>,
}

/// Resolves a key to its path in the document view: caller fields and `custom` stay as they are,
/// any other key lives under `custom`.
fn resolve(key: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err("must not be empty or have an empty path segment".into());
    }
    let first = segments[0].as_str();
    if SERVER_FIELDS.contains(&first) {
        return Err(format!("{first:?} is managed by roster and cannot be set"));
    }
    if first == "custom" || CALLER_FIELDS.contains(&first) {
        if segments.len() > 1
            && ![
                "custom",
                "privacy_settings",
                "push_notifications",
                "teams_role",
            ]
            .contains(&first)
        {
            return Err(format!("{first:?} has no nested keys"));
        }
        return Ok(segments);
    }
    let mut path = vec!["custom".to_owned()];
    path.extend(segments);
    Ok(path)
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl PartialUpdate {
    /// Applies the update to `current`. `at` prefixes violation paths (`users[0]`).
    pub fn apply(&self, current: &Settable, at: &str) -> Result<Settable, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut sets: Vec<(Vec<String>, &str, &Value)> = Vec::new();
        for (key, value) in &self.set {
            match resolve(key) {
                Ok(path) if path[0] == "custom" => {
                    match dotted_key_violation(value, &format!("{at}.set.{key}")) {
                        Some(violation) => violations.push(violation),
                        None => sets.push((path, key, value)),
                    }
                }
                Ok(path) => sets.push((path, key, value)),
                Err(why) => violations.push(FieldViolation::new(format!("{at}.set.{key}"), why)),
            }
        }
        let mut unsets: Vec<(Vec<String>, &str)> = Vec::new();
        for key in &self.unset {
            match resolve(key) {
                Ok(path) => unsets.push((path, key)),
                Err(why) => violations.push(FieldViolation::new(format!("{at}.unset.{key}"), why)),
            }
        }
        let all: Vec<(&[String], String)> = sets
            .iter()
            .map(|(p, k, _)| (p.as_slice(), format!("{at}.set.{k}")))
            .chain(
                unsets
                    .iter()
                    .map(|(p, k)| (p.as_slice(), format!("{at}.unset.{k}"))),
            )
            .collect();
        for (i, (a, a_name)) in all.iter().enumerate() {
            for (b, b_name) in &all[i + 1..] {
                if is_prefix(a, b) || is_prefix(b, a) {
                    violations.push(FieldViolation::new(
                        b_name.clone(),
                        format!("conflicts with {a_name}: one path contains the other"),
                    ));
                }
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }

        let mut doc = to_doc(current);
        for (path, key, value) in &sets {
            let merge = path.len() == 1 && path[0] == "privacy_settings";
            if let Err(why) = set_path(&mut doc, path, (*value).clone(), merge) {
                violations.push(FieldViolation::new(format!("{at}.set.{key}"), why));
            }
        }
        for (path, _) in &unsets {
            unset_path(&mut doc, path);
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        from_doc(doc, &current.fields.id, at)
    }
}

/// Refuses a batch that names a user twice (`users[i].id` of the second mention).
pub fn check_distinct_ids(updates: &[PartialUpdate]) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for (i, update) in updates.iter().enumerate() {
        if !seen.insert(update.id.as_str()) {
            return Err(Error::invalid(
                format!("users[{i}].id"),
                "appears twice in the batch",
            ));
        }
    }
    Ok(())
}

/// A batch of partial updates applied to the stored users, all or nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedBatch {
    /// The users after their updates, in the batch's order.
    pub users: Vec<User>,
    /// `revoked[i]`: `users[i]`'s update set a new token revocation time.
    pub revoked: Vec<bool>,
    /// Some update changed a user's role or team roles, which must name roles that exist.
    pub roles_changed: bool,
}

impl AppliedBatch {
    /// Applies each update to the user `find` gives for its id, at `now`. A user that does not
    /// exist or is deleted refuses the batch at once; field violations are gathered over the
    /// whole batch (paths `users[i]...`).
    pub fn of(
        updates: &[PartialUpdate],
        mut find: impl FnMut(&str) -> Option<User>,
        now: Micros,
    ) -> Result<AppliedBatch, Error> {
        let mut applied = AppliedBatch {
            users: Vec::with_capacity(updates.len()),
            revoked: Vec::with_capacity(updates.len()),
            roles_changed: false,
        };
        let mut violations = Vec::new();
        for (i, update) in updates.iter().enumerate() {
            let mut user =
                find(&update.id).ok_or_else(|| Error::UserNotFound(update.id.clone()))?;
            if user.deleted_at.is_some() {
                return Err(Error::UserDeleted(user.fields.id));
            }
            let at = format!("users[{i}]");
            let current = Settable {
                fields: user.fields.clone(),
                revoke_tokens_issued_before: user.revoke_tokens_issued_before,
            };
            match update.apply(&current, &at) {
                Ok(next) => {
                    violations.extend(next.fields.violations(&at));
                    applied.revoked.push(
                        next.revoke_tokens_issued_before.is_some()
                            && next.revoke_tokens_issued_before != user.revoke_tokens_issued_before,
                    );
                    if next.fields.role_names().ne(user.fields.role_names()) {
                        applied.roles_changed = true;
                    }
                    user.fields = next.fields;
                    user.revoke_tokens_issued_before = next.revoke_tokens_issued_before;
                    user.updated_at = now;
                    applied.users.push(user);
                }
                Err(v) => violations.extend(v),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(applied)
    }

    /// Checks the users' roles against the roles that exist (`scope_of` says which do), when an
    /// update changed any: the roles a stored user holds exist already (a role in use cannot be
    /// deleted).
    pub fn check_roles(&self, scope_of: impl Fn(&str) -> Option<RoleScope>) -> Result<(), Error> {
        if !self.roles_changed {
            return Ok(());
        }
        let violations: Vec<FieldViolation> = self
            .users
            .iter()
            .enumerate()
            .flat_map(|(i, u)| u.fields.role_violations(&format!("users[{i}]"), &scope_of))
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }

    /// The change feed's record of the batch: `user.updated` for each user, followed by
    /// `user.tokens_revoked` for a user whose update set a new revocation time.
    pub fn events(&self) -> impl Iterator<Item = (EventKind, &User)> {
        self.users
            .iter()
            .zip(&self.revoked)
            .flat_map(|(user, &revoked)| {
                let tokens = revoked.then_some((EventKind::UserTokensRevoked, user));
                std::iter::once((EventKind::UserUpdated, user)).chain(tokens)
            })
    }
}

fn set_path(
    doc: &mut Map<String, Value>,
    path: &[String],
    value: Value,
    merge: bool,
) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty path")?;
    let mut node = doc;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = node
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        node = entry
            .as_object_mut()
            .ok_or_else(|| format!("{:?} is not an object", parents[..=depth].join(".")))?;
    }
    match (merge, node.get_mut(last), value) {
        (true, Some(Value::Object(existing)), Value::Object(new)) => {
            existing.extend(new);
        }
        (_, _, value) => {
            node.insert(last.clone(), value);
        }
    }
    Ok(())
}

fn unset_path(doc: &mut Map<String, Value>, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = doc;
    for segment in parents {
        match node.get_mut(segment).and_then(Value::as_object_mut) {
            Some(next) => node = next,
            None => return,
        }
    }
    node.remove(last);
}

/// The document view: caller fields as JSON, instants as RFC 3339 strings.
fn to_doc(s: &Settable) -> Map<String, Value> {
    let f = &s.fields;
    let mut doc = Map::new();
    if let Some(name) = &f.name {
        doc.insert("name".into(), Value::String(name.clone()));
    }
    if let Some(image) = &f.image {
        doc.insert("image".into(), Value::String(image.clone()));
    }
    doc.insert("role".into(), Value::String(f.role.clone()));
    doc.insert("language".into(), Value::String(f.language.clone()));
    doc.insert("invisible".into(), Value::Bool(f.invisible));
    doc.insert(
        "teams".into(),
        f.teams.iter().cloned().map(Value::String).collect(),
    );
    doc.insert(
        "teams_role".into(),
        Value::Object(
            f.teams_role
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    if let Some(privacy) = &f.privacy_settings {
        doc.insert(
            "privacy_settings".into(),
            serde_json::to_value(privacy).unwrap_or_default(),
        );
    }
    if let Some(push) = &f.push_notifications {
        let mut p = Map::new();
        p.insert("disabled".into(), Value::Bool(push.disabled));
        if let Some(until) = push.disabled_until {
            p.insert(
                "disabled_until".into(),
                Value::String(format_rfc3339(until)),
            );
        }
        doc.insert("push_notifications".into(), Value::Object(p));
    }
    if let Some(revoke) = s.revoke_tokens_issued_before {
        doc.insert(
            "revoke_tokens_issued_before".into(),
            Value::String(format_rfc3339(revoke)),
        );
    }
    doc.insert("custom".into(), Value::Object(f.custom.clone()));
    doc
}

fn from_doc(
    mut doc: Map<String, Value>,
    id: &str,
    at: &str,
) -> Result<Settable, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut bad = |field: &str, why: &str| {
        violations.push(FieldViolation::new(format!("{at}.set.{field}"), why))
    };

    let text = |doc: &mut Map<String, Value>,
                field: &str,
                bad: &mut dyn FnMut(&str, &str)|
     -> Option<String> {
        match doc.remove(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                bad(field, "must be a string");
                None
            }
        }
    };
    let name = text(&mut doc, "name", &mut bad);
    let image = text(&mut doc, "image", &mut bad);
    let role = text(&mut doc, "role", &mut bad).unwrap_or_else(|| "user".into());
    let language = text(&mut doc, "language", &mut bad).unwrap_or_default();
    let revoke = text(&mut doc, "revoke_tokens_issued_before", &mut bad).and_then(|t| {
        let parsed = parse_rfc3339(&t);
        if parsed.is_none() {
            bad(
                "revoke_tokens_issued_before",
                "must be an RFC 3339 timestamp",
            );
        }
        parsed
    });
    let invisible = match doc.remove("invisible") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            bad("invisible", "must be a boolean");
            false
        }
    };
    let teams = match doc.remove("teams") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let teams: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if teams.len() != items.len() {
                bad("teams", "must be an array of strings");
            }
            teams
        }
        Some(_) => {
            bad("teams", "must be an array of strings");
            Vec::new()
        }
    };
    let teams_role = match doc.remove("teams_role") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => {
            let roles: BTreeMap<String, String> = map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            if roles.len() != map.len() {
                bad("teams_role", "must map team names to role names");
            }
            roles
        }
        Some(_) => {
            bad("teams_role", "must map team names to role names");
            BTreeMap::new()
        }
    };
    let privacy_settings = match doc.remove("privacy_settings") {
        None | Some(Value::Null) => None,
        Some(v) => match serde_json::from_value::<PrivacySettings>(v) {
            Ok(p) => Some(p),
            Err(_) => {
                bad(
                    "privacy_settings",
                    "must be {typing_indicators|read_receipts|delivery_receipts: {enabled: bool}}",
                );
                None
            }
        },
    };
    let push_notifications = match doc.remove("push_notifications") {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut p)) => {
            let disabled = match p.remove("disabled") {
                None | Some(Value::Null) => Some(false),
                Some(Value::Bool(b)) => Some(b),
                Some(_) => None,
            };
            let until = match p.remove("disabled_until") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(t)) => parse_rfc3339(&t).map(Some),
                Some(_) => None,
            };
            match (disabled, until, p.is_empty()) {
                (Some(disabled), Some(disabled_until), true) => Some(PushNotifications {
                    disabled,
                    disabled_until,
                }),
                _ => {
                    bad(
                        "push_notifications",
                        "must be {disabled: bool, disabled_until: RFC 3339 timestamp}",
                    );
                    None
                }
            }
        }
        Some(_) => {
            bad("push_notifications", "must be an object");
            None
        }
    };
    let custom = match doc.remove("custom") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            bad("custom", "must be an object");
            Map::new()
        }
    };
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(Settable {
        fields: UserFields {
            id: id.to_owned(),
            name,
            image,
            role,
            custom,
            language,
            invisible,
            teams,
            teams_role,
            privacy_settings,
            push_notifications,
        },
        revoke_tokens_issued_before: revoke,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn current() -> Settable {
        let mut fields = UserFields::with_id("u1");
        fields.name = Some("Ann".into());
        fields.custom = json!({"color": "blue", "address": {"city": "Oslo", "zip": "0150"}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        Settable {
            fields,
            revoke_tokens_issued_before: None,
        }
    }

    fn update(set: Value, unset: &[&str]) -> PartialUpdate {
        PartialUpdate {
            id: "u1".into(),
            set: set.as_object().cloned().unwrap_or_default(),
            unset: unset.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn unknown_keys_go_to_custom_and_unset_clears_fields() {
        let out = update(json!({"new-field": "value"}), &["name"])
            .apply(&current(), "u")
            .unwrap();
        assert_eq!(out.fields.name, None);
        assert_eq!(out.fields.custom["new-field"], json!("value"));
        assert_eq!(out.fields.custom["color"], json!("blue"));
    }

    #[test]
    fn dotted_paths_set_and_unset_nested_keys() {
        let out = update(
            json!({"address.country": "NO", "custom.name": "nick"}),
            &["address.zip"],
        )
        .apply(&current(), "u")
        .unwrap();
        assert_eq!(
            out.fields.custom["address"],
            json!({"city": "Oslo", "country": "NO"})
        );
        assert_eq!(out.fields.custom["name"], json!("nick"));
        assert_eq!(out.fields.name.as_deref(), Some("Ann"));
        let out = update(json!({"a.b.c": 1}), &[])
            .apply(&current(), "u")
            .unwrap();
        assert_eq!(out.fields.custom["a"], json!({"b": {"c": 1}}));
    }

    #[test]
    fn conflicting_paths_are_rejected() {
        let err = update(json!({"a.b.c": 1}), &["a.b"])
            .apply(&current(), "users[0]")
            .unwrap_err();
        assert!(err[0].field.starts_with("users[0]."));
        assert!(
            update(json!({"a": 1, "a.b": 2}), &[])
                .apply(&current(), "u")
                .is_err()
        );
        assert!(
            update(json!({"name": "x"}), &["name"])
                .apply(&current(), "u")
                .is_err()
        );
    }

    #[test]
    fn bad_keys_and_types_are_rejected() {
        for set in [
            json!({"a..b": 1}),
            json!({".a": 1}),
            json!({"created_at": 1}),
            json!({"name": 5}),
            json!({"invisible": "yes"}),
            json!({"name.first": "x"}),
            json!({"color.x": 1}),
        ] {
            assert!(
                update(set.clone(), &[]).apply(&current(), "u").is_err(),
                "{set}"
            );
        }
    }

    #[test]
    fn privacy_settings_merge() {
        let s = update(
            json!({"privacy_settings": {"typing_indicators": {"enabled": false}}}),
            &[],
        )
        .apply(&current(), "u")
        .unwrap();
        let s = update(
            json!({"privacy_settings": {"read_receipts": {"enabled": true}}}),
            &[],
        )
        .apply(&s, "u")
        .unwrap();
        let p = s.fields.privacy_settings.unwrap();
        assert_eq!(
            p.typing_indicators,
            Some(super::super::user::PrivacySetting { enabled: false })
        );
        assert_eq!(
            p.read_receipts,
            Some(super::super::user::PrivacySetting { enabled: true })
        );
    }

    #[test]
    fn revoke_and_push_parse_timestamps() {
        let s = update(
            json!({"revoke_tokens_issued_before": "2026-01-01T00:00:00Z",
                   "push_notifications": {"disabled": true, "disabled_until": "2026-02-01T00:00:00Z"}}),
            &[],
        )
        .apply(&current(), "u")
        .unwrap();
        assert_eq!(
            s.revoke_tokens_issued_before,
            parse_rfc3339("2026-01-01T00:00:00Z")
        );
        assert!(s.fields.push_notifications.as_ref().unwrap().disabled);
        let s = update(json!({}), &["revoke_tokens_issued_before"])
            .apply(&s, "u")
            .unwrap();
        assert_eq!(s.revoke_tokens_issued_before, None);
    }

    fn stored(id: &str) -> User {
        let mut fields = UserFields::with_id(id);
        fields.name = Some("Ann".into());
        User::new(fields, 1)
    }

    fn for_user(id: &str, set: Value) -> PartialUpdate {
        PartialUpdate {
            id: id.into(),
            set: set.as_object().cloned().unwrap_or_default(),
            unset: Vec::new(),
        }
    }

    fn apply_batch(updates: &[PartialUpdate], users: &[User]) -> Result<AppliedBatch, Error> {
        let find = |id: &str| users.iter().find(|u| u.fields.id == id).cloned();
        AppliedBatch::of(updates, find, 50)
    }

    #[test]
    fn a_batch_names_each_user_once() {
        let updates = [
            for_user("u1", json!({})),
            for_user("u2", json!({})),
            for_user("u1", json!({})),
        ];
        match check_distinct_ids(&updates) {
            Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, "users[2].id"),
            other => panic!("{other:?}"),
        }
        assert!(check_distinct_ids(&updates[..2]).is_ok());
    }

    #[test]
    fn a_batch_applies_every_update_and_says_what_the_feed_records() {
        let updates = [
            for_user("u1", json!({"color": "red"})),
            for_user(
                "u2",
                json!({"revoke_tokens_issued_before": "2026-01-01T00:00:00Z"}),
            ),
        ];
        let applied = apply_batch(&updates, &[stored("u1"), stored("u2")]).unwrap();
        assert_eq!(applied.users[0].fields.custom["color"], json!("red"));
        assert_eq!(applied.users[0].updated_at, 50);
        assert_eq!(applied.revoked, [false, true]);
        assert!(!applied.roles_changed);
        assert!(applied.check_roles(|_| None).is_ok(), "roles unchanged");
        let events: Vec<(EventKind, &str)> = applied
            .events()
            .map(|(k, u)| (k, u.fields.id.as_str()))
            .collect();
        assert_eq!(
            events,
            [
                (EventKind::UserUpdated, "u1"),
                (EventKind::UserUpdated, "u2"),
                (EventKind::UserTokensRevoked, "u2"),
            ]
        );
        // Setting the revocation time it already has is no new revocation.
        let again = apply_batch(&updates[1..], &applied.users[1..]).unwrap();
        assert_eq!(again.revoked, [false]);
    }

    #[test]
    fn a_batch_is_refused_by_a_missing_or_deleted_user_or_any_violation() {
        let mut gone = stored("u2");
        gone.deleted_at = Some(3);
        let updates = [for_user("u1", json!({})), for_user("u2", json!({}))];
        assert!(matches!(
            apply_batch(&updates, &[stored("u1")]),
            Err(Error::UserNotFound(id)) if id == "u2"
        ));
        assert!(matches!(
            apply_batch(&updates, &[stored("u1"), gone]),
            Err(Error::UserDeleted(id)) if id == "u2"
        ));
        let bad = [
            for_user("u1", json!({"name": 5})),
            for_user("u2", json!({"created_at": 1})),
        ];
        match apply_batch(&bad, &[stored("u1"), stored("u2")]) {
            Err(Error::InvalidArgument(v)) => {
                let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
                assert_eq!(fields, ["users[0].set.name", "users[1].set.created_at"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn changed_roles_must_exist() {
        let updates = [for_user("u1", json!({"role": "moderator"}))];
        let applied = apply_batch(&updates, &[stored("u1")]).unwrap();
        assert!(applied.roles_changed);
        assert!(applied.check_roles(|_| Some(RoleScope::Global)).is_ok());
        match applied.check_roles(|_| None) {
            Err(Error::InvalidArgument(v)) => assert!(v[0].field.starts_with("users[0]")),
            other => panic!("{other:?}"),
        }
    }
}
