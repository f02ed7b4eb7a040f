//! Partial updates: any `{"set": {...}, "unset": [...], "custom": {...}}` either merges into a
//! user or is refused with violations under the update's path. A merge never panics, keeps the
//! id, removes what it unsets, and applying the same update again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::domain::partial::{PartialUpdate, Settable};
use roster::domain::user::UserFields;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let set = match input.remove("set") {
        Some(Value::Object(set)) => set,
        _ => Map::new(),
    };
    let unset: Vec<String> = match input.remove("unset") {
        Some(Value::Array(keys)) => keys
            .into_iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut fields = UserFields::with_id("u1");
    fields.name = Some("Ann".into());
    fields.teams = vec!["red".into()];
    if let Some(Value::Object(custom)) = input.remove("custom") {
        fields.custom = custom;
    }
    let current = Settable {
        fields,
        revoke_tokens_issued_before: None,
    };
    let update = PartialUpdate {
        id: "u1".into(),
        set,
        unset: unset.clone(),
    };
    match update.apply(&current, "users[0]") {
        Ok(next) => {
            assert_eq!(
                next.fields.id, "u1",
                "a partial update never changes the id"
            );
            // Whatever the result, the write-time validation must be able to judge it.
            let _ = next.fields.violations("users[0]");
            for key in &unset {
                assert!(!present(&next, key), "{key:?} was unset but is still there");
            }
            let again = update
                .apply(&next, "users[0]")
                .expect("an update that applied once applies again");
            assert_eq!(again, next, "applying the same update twice changes more");
        }
        Err(violations) => {
            assert!(!violations.is_empty(), "a refusal names what is wrong");
            for violation in violations {
                assert!(
                    violation.field.starts_with("users[0]."),
                    "violation outside the update: {}",
                    violation.field
                );
            }
        }
    }
});

/// Whether an unset key still has a value after the merge (custom keys, nested or not).
fn present(next: &Settable, key: &str) -> bool {
    let f = &next.fields;
    match key {
        "name" => f.name.is_some(),
        "image" => f.image.is_some(),
        "revoke_tokens_issued_before" => next.revoke_tokens_issued_before.is_some(),
        "privacy_settings" => f.privacy_settings.is_some(),
        "push_notifications" => f.push_notifications.is_some(),
        "teams" => !f.teams.is_empty(),
        "teams_role" => !f.teams_role.is_empty(),
        // Fields with a default rather than an absence.
        "role" | "language" | "invisible" | "custom" => false,
        _ => {
            let path = key.strip_prefix("custom.").unwrap_or(key);
            let segments: Vec<&str> = path.split('.').collect();
            if segments.first().is_some_and(|first| {
                ["privacy_settings", "push_notifications", "teams_role"].contains(first)
            }) {
                return false;
            }
            let mut node = &f.custom;
            for (i, segment) in segments.iter().enumerate() {
                match node.get(*segment) {
                    None => return false,
                    Some(_) if i + 1 == segments.len() => return true,
                    Some(Value::Object(inner)) => node = inner,
                    Some(_) => return false,
                }
            }
            false
        }
    }
}
