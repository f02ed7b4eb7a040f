//! Proto <-> domain conversions at the edge.
use prost_types::{ListValue, Struct, Timestamp, value::Kind};
use serde_json::{Map, Number, Value};

use crate::domain::device::Device;
use crate::domain::presence::AsOf;
use crate::domain::time::Micros;
use crate::domain::user::{PrivacySetting, PrivacySettings, PushNotifications, User, UserFields};
use crate::error::{Error, FieldViolation};
use crate::grpc::pb;

/// Largest integer a double holds exactly: integral numbers up to it are stored as integers.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

pub fn timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

pub fn micros(ts: &Timestamp) -> Option<Micros> {
    ts.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos) / 1_000))
        .filter(|_| (0..1_000_000_000).contains(&ts.nanos))
}

/// A protobuf Struct as a JSON object. Non-finite numbers are refused (JSON has none).
pub fn struct_to_json(s: Struct, at: &str) -> Result<Map<String, Value>, FieldViolation> {
    object_to_json(s, &Place::Root(at))
}

/// Where a value sits in a document (`users[u1].custom.list[2]`): spelled out only for a
/// violation, so a valid document costs no path strings.
enum Place<'a> {
    Root(&'a str),
    Key(&'a Place<'a>, &'a str),
    Index(&'a Place<'a>, usize),
}

impl Place<'_> {
    fn path(&self) -> String {
        match self {
            Place::Root(at) => (*at).to_owned(),
            Place::Key(parent, key) => format!("{}.{key}", parent.path()),
            Place::Index(parent, i) => format!("{}[{i}]", parent.path()),
        }
    }
}

fn object_to_json(s: Struct, at: &Place<'_>) -> Result<Map<String, Value>, FieldViolation> {
    s.fields
        .into_iter()
        .map(|(k, v)| {
            let v = value_to_json(v, &Place::Key(at, &k))?;
            Ok((k, v))
        })
        .collect()
}

fn value_to_json(v: prost_types::Value, at: &Place<'_>) -> Result<Value, FieldViolation> {
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
                Value::Number(Number::from(n as i64))
            } else {
                Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| FieldViolation::new(at.path(), "numbers must be finite"))?
            }
        }
        Some(Kind::StructValue(s)) => Value::Object(object_to_json(s, at)?),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .into_iter()
                .enumerate()
                .map(|(i, v)| value_to_json(v, &Place::Index(at, i)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

pub fn json_to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

pub fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(json_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A Struct as a JSON object; a value JSON cannot hold is an invalid-argument error at `at`.
pub fn struct_to_map(s: Struct, at: &str) -> Result<Map<String, Value>, Error> {
    struct_to_json(s, at).map_err(|v| Error::InvalidArgument(vec![v]))
}

/// A UserRequest as the caller fields of a replace. `at` names it in violations (`users[u1]`).
pub fn user_fields(req: pb::UserRequest, at: &str) -> Result<UserFields, Error> {
    let custom = match req.custom {
        Some(s) => struct_to_map(s, &format!("{at}.custom"))?,
        None => Map::new(),
    };
    let push_notifications = match req.push_notifications {
        Some(p) => Some(PushNotifications {
            disabled: p.disabled,
            disabled_until: match p.disabled_until {
                Some(ts) => Some(micros(&ts).ok_or_else(|| {
                    Error::invalid(
                        format!("{at}.push_notifications.disabled_until"),
                        "not a valid timestamp",
                    )
                })?),
                None => None,
            },
        }),
        None => None,
    };
    Ok(UserFields {
        id: req.id,
        name: req.name,
        image: req.image,
        role: req.role.unwrap_or_else(|| "user".into()),
        custom,
        language: req.language,
        invisible: req.invisible,
        teams: req.teams,
        teams_role: req.teams_role.into_iter().collect(),
        privacy_settings: req.privacy_settings.map(|p| PrivacySettings {
            typing_indicators: p
                .typing_indicators
                .map(|s| PrivacySetting { enabled: s.enabled }),
            read_receipts: p
                .read_receipts
                .map(|s| PrivacySetting { enabled: s.enabled }),
            delivery_receipts: p
                .delivery_receipts
                .map(|s| PrivacySetting { enabled: s.enabled }),
        }),
        push_notifications,
    })
}

/// A user as callers see it at `as_of`: bans past their expiry and stale presence do not count.
pub fn user(u: User, as_of: AsOf) -> pb::User {
    let setting = |s: Option<PrivacySetting>| s.map(|s| pb::PrivacySetting { enabled: s.enabled });
    let online = as_of.presence.online(&u, as_of.at);
    let ban = u.ban_in_force(as_of.at).cloned();
    let f = u.fields;
    pb::User {
        id: f.id,
        name: f.name,
        image: f.image,
        role: f.role,
        custom: Some(json_to_struct(&f.custom)),
        language: f.language,
        invisible: f.invisible,
        teams: f.teams,
        teams_role: f.teams_role.into_iter().collect(),
        privacy_settings: f.privacy_settings.map(|p| pb::PrivacySettings {
            typing_indicators: setting(p.typing_indicators),
            read_receipts: setting(p.read_receipts),
            delivery_receipts: setting(p.delivery_receipts),
        }),
        push_notifications: f.push_notifications.map(|p| pb::PushNotificationSettings {
            disabled: p.disabled,
            disabled_until: p.disabled_until.map(timestamp),
        }),
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
        deactivated_at: u.deactivated_at.map(timestamp),
        deleted_at: u.deleted_at.map(timestamp),
        banned: ban.as_ref().is_some_and(|b| !b.shadow),
        ban_expires: ban.as_ref().and_then(|b| b.expires).map(timestamp),
        shadow_banned: ban.as_ref().is_some_and(|b| b.shadow),
        blocked_user_ids: u.blocked_user_ids,
        devices: u.devices.into_iter().map(device).collect(),
        online,
        last_active: u.last_active.map(timestamp),
        revoke_tokens_issued_before: u.revoke_tokens_issued_before.map(timestamp),
        avg_response_time: u.avg_response_time,
    }
}

pub fn device(d: Device) -> pb::Device {
    pb::Device {
        id: d.id,
        push_provider: d.push_provider.as_str().to_owned(),
        push_provider_name: d.push_provider_name,
        voip: d.voip,
        created_at: Some(timestamp(d.created_at)),
    }
}

impl From<crate::domain::role::Role> for pb::Role {
    fn from(r: crate::domain::role::Role) -> Self {
        pb::Role {
            name: r.name,
            builtin: r.builtin,
            channel_level: r.channel_level,
            created_at: Some(timestamp(r.created_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_epoch() {
        for m in [0, 1, -1, 1_767_323_045_123_456, -1_500_000] {
            assert_eq!(micros(&timestamp(m)), Some(m));
        }
    }

    #[test]
    fn integral_numbers_become_integers_and_nan_is_refused() {
        let s = Struct {
            fields: [(
                "n".to_string(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue(10.0)),
                },
            )]
            .into(),
        };
        assert_eq!(
            struct_to_json(s, "custom").unwrap()["n"],
            serde_json::json!(10)
        );
        let s = Struct {
            fields: [(
                "n".to_string(),
                prost_types::Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        };
        assert_eq!(struct_to_json(s, "custom").unwrap_err().field, "custom.n");
    }

    #[test]
    fn a_refused_number_is_named_by_its_place_at_any_depth() {
        let value = |kind| prost_types::Value { kind: Some(kind) };
        let nested = Struct {
            fields: [(
                "list".to_string(),
                value(Kind::ListValue(ListValue {
                    values: vec![
                        value(Kind::NumberValue(1.0)),
                        value(Kind::NumberValue(f64::INFINITY)),
                    ],
                })),
            )]
            .into(),
        };
        let s = Struct {
            fields: [("a".to_string(), value(Kind::StructValue(nested)))].into(),
        };
        assert_eq!(
            struct_to_json(s, "users[u1].custom").unwrap_err().field,
            "users[u1].custom.a.list[1]"
        );
    }
}
