//! JSON shapes of Stream's user API <-> domain, at the edge. Instants leave as integer
//! nanoseconds since the Unix epoch and arrive as RFC 3339 strings (or such integers).
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::domain::device::Device;
use crate::domain::presence::AsOf;
use crate::domain::task::Task;
use crate::domain::time::{Micros, parse_rfc3339};
use crate::domain::user::{PrivacySettings, PushNotifications, User, UserFields};

/// An instant as the SDKs decode it: nanoseconds since the epoch.
pub fn nanos(micros: Micros) -> Value {
    Value::from(micros.saturating_mul(1_000))
}

/// An instant a caller sent: an RFC 3339 string, or integer nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub Micros);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match Value::deserialize(d)? {
            Value::String(text) => parse_rfc3339(&text)
                .map(Instant)
                .ok_or_else(|| D::Error::custom(format!("{text:?} is not an RFC 3339 instant"))),
            Value::Number(n) => n
                .as_i64()
                .map(|ns| Instant(ns.div_euclid(1_000)))
                .ok_or_else(|| D::Error::custom("an instant in nanoseconds must be an integer")),
            _ => Err(D::Error::custom(
                "an instant is an RFC 3339 string or integer nanoseconds",
            )),
        }
    }
}

/// Stream's `UserRequest`. Every field but `id` may be absent or `null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub custom: Option<Map<String, Value>>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub invisible: Option<bool>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub teams: Option<Vec<String>>,
    #[serde(default)]
    pub teams_role: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub privacy_settings: Option<PrivacySettings>,
    #[serde(default)]
    pub push_notifications: Option<PushNotificationsRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushNotificationsRequest {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub disabled_until: Option<Instant>,
}

impl From<UserRequest> for UserFields {
    fn from(u: UserRequest) -> UserFields {
        UserFields {
            id: u.id,
            name: u.name,
            image: u.image,
            role: u.role.unwrap_or_else(|| "user".into()),
            custom: u.custom.unwrap_or_default(),
            language: u.language.unwrap_or_default(),
            invisible: u.invisible.unwrap_or_default(),
            teams: u.teams.unwrap_or_default(),
            teams_role: u.teams_role.unwrap_or_default(),
            privacy_settings: u.privacy_settings,
            push_notifications: u.push_notifications.map(|p| PushNotifications {
                disabled: p.disabled.unwrap_or_default(),
                disabled_until: p.disabled_until.map(|i| i.0),
            }),
        }
    }
}

/// A user as Stream's `FullUserResponse`, shown at `as_of` (a ban past its expiry and stale
/// presence do not count). Chat-only counters that roster does not keep are zero and empty.
pub fn user(u: User, as_of: AsOf) -> Value {
    let online = as_of.presence.online(&u, as_of.at);
    let ban = u.ban_in_force(as_of.at).cloned();
    let f = u.fields;
    let mut out = json!({
        "id": f.id,
        "role": f.role,
        "custom": f.custom,
        "language": f.language,
        "invisible": f.invisible,
        "teams": f.teams,
        "teams_role": f.teams_role,
        "created_at": nanos(u.created_at),
        "updated_at": nanos(u.updated_at),
        "banned": ban.as_ref().is_some_and(|b| !b.shadow),
        "shadow_banned": ban.as_ref().is_some_and(|b| b.shadow),
        "online": online,
        "blocked_user_ids": u.blocked_user_ids,
        "devices": u.devices.into_iter().map(|d| device(d, None)).collect::<Vec<_>>(),
        "mutes": [],
        "channel_mutes": [],
        "unread_count": 0,
        "total_unread_count": 0,
        "unread_channels": 0,
        "unread_threads": 0,
    });
    let Value::Object(fields) = &mut out else {
        return out;
    };
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            fields.insert(key.to_owned(), value);
        }
    };
    put("name", f.name.map(Value::String));
    put("image", f.image.map(Value::String));
    put(
        "privacy_settings",
        f.privacy_settings
            .and_then(|p| serde_json::to_value(p).ok()),
    );
    put(
        "push_notifications",
        f.push_notifications.map(|p| {
            let mut push = json!({ "disabled": p.disabled });
            if let Some(until) = p.disabled_until {
                push["disabled_until"] = nanos(until);
            }
            push
        }),
    );
    put("deactivated_at", u.deactivated_at.map(nanos));
    put("deleted_at", u.deleted_at.map(nanos));
    put(
        "ban_expires",
        ban.as_ref().and_then(|b| b.expires).map(nanos),
    );
    put("last_active", u.last_active.map(nanos));
    put(
        "revoke_tokens_issued_before",
        u.revoke_tokens_issued_before.map(nanos),
    );
    put("avg_response_time", u.avg_response_time.map(Value::from));
    out
}

/// Users by id, as upsert and partial-update answers carry them.
pub fn user_map(users: Vec<User>, as_of: AsOf) -> Map<String, Value> {
    users
        .into_iter()
        .map(|u| (u.fields.id.clone(), user(u, as_of)))
        .collect()
}

/// Stream's `DeviceResponse`; `user_id` when the caller knows whose device it is.
pub fn device(d: Device, user_id: Option<&str>) -> Value {
    let mut out = json!({
        "id": d.id,
        "push_provider": d.push_provider.as_str(),
        "voip": d.voip,
        "disabled": false,
        "created_at": nanos(d.created_at),
    });
    if let Some(name) = d.push_provider_name {
        out["push_provider_name"] = Value::String(name);
    }
    if let Some(user_id) = user_id {
        out["user_id"] = Value::String(user_id.to_owned());
    }
    out
}

/// Stream's `GetTaskResponse` (without `duration`): lower-case status, nanosecond instants.
pub fn task(t: Task) -> Value {
    let mut out = json!({
        "task_id": t.id,
        "status": t.status.as_str(),
        "created_at": nanos(t.created_at),
        "updated_at": nanos(t.updated_at),
        "result": t.result,
    });
    if let Some(error) = t.error {
        out["error"] = json!({ "type": error.kind, "description": error.description });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_arrive_as_rfc3339_or_nanoseconds_and_leave_as_nanoseconds() {
        let from_text: Instant =
            serde_json::from_value(json!("2026-01-02T03:04:05.123456Z")).unwrap();
        assert_eq!(from_text.0, 1_767_323_045_123_456);
        let from_nanos: Instant =
            serde_json::from_value(json!(1_767_323_045_123_456_789_i64)).unwrap();
        assert_eq!(from_nanos.0, 1_767_323_045_123_456);
        assert!(serde_json::from_value::<Instant>(json!("yesterday")).is_err());
        assert!(serde_json::from_value::<Instant>(json!(true)).is_err());
        assert_eq!(
            nanos(1_767_323_045_123_456),
            json!(1_767_323_045_123_456_000_i64)
        );
    }

    #[test]
    fn a_user_request_takes_nulls_and_refuses_unknown_fields() {
        let u: UserRequest =
            serde_json::from_value(json!({"id": "u1", "name": null, "teams": null})).unwrap();
        let fields = UserFields::from(u);
        assert_eq!(fields.role, "user");
        assert!(fields.teams.is_empty());
        assert!(serde_json::from_value::<UserRequest>(json!({"id": "u1", "nmae": "x"})).is_err());
    }
}
