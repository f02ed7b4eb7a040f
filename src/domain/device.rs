//! Devices registered for push notifications.
use serde::{Deserialize, Serialize};
use strum::IntoEnumIterator;

use super::time::Micros;
use crate::error::{Error, FieldViolation};

/// Most devices a user keeps; adding one more replaces the oldest.
pub const MAX_DEVICES_PER_USER: usize = 25;
pub const MAX_DEVICE_ID_CHARS: usize = 255;
pub const MAX_PUSH_PROVIDER_NAME_CHARS: usize = 255;

/// A device's push service. The strings are stored in `devices.push_provider`, in change-feed
/// snapshots (serde) and shown on the wire.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PushProvider {
    Firebase,
    Apn,
    Huawei,
    Xiaomi,
}

impl PushProvider {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A registered device. Serialized into change-feed snapshots, so its shape is stored data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub push_provider: PushProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_provider_name: Option<String>,
    #[serde(default)]
    pub voip: bool,
    pub created_at: Micros,
}

/// A CreateDevice request, as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    pub id: String,
    pub push_provider: String,
    pub push_provider_name: Option<String>,
    pub voip: bool,
}

impl NewDevice {
    /// Checks the request and gives the device it registers at `now`.
    pub fn device(self, now: Micros) -> Result<Device, Error> {
        let mut bad = Vec::new();
        if let Some(problem) = device_id_problem(&self.id) {
            bad.push(FieldViolation::new("id", problem));
        }
        let provider: Option<PushProvider> = self.push_provider.parse().ok();
        if provider.is_none() {
            let known: Vec<&str> = PushProvider::iter().map(PushProvider::as_str).collect();
            bad.push(FieldViolation::new(
                "push_provider",
                format!(
                    "must be one of {}; got {:?}",
                    known.join(", "),
                    self.push_provider
                ),
            ));
        }
        let name = self.push_provider_name.filter(|n| !n.is_empty());
        if let Some(name) = &name
            && (name.chars().count() > MAX_PUSH_PROVIDER_NAME_CHARS || name.contains('\0'))
        {
            bad.push(FieldViolation::new(
                "push_provider_name",
                format!("must be at most {MAX_PUSH_PROVIDER_NAME_CHARS} characters, without NUL"),
            ));
        }
        match provider {
            Some(push_provider) if bad.is_empty() => Ok(Device {
                id: self.id,
                push_provider,
                push_provider_name: name,
                voip: self.voip,
                created_at: now,
            }),
            _ => Err(Error::InvalidArgument(bad)),
        }
    }
}

/// Device ids are push tokens: any text of 1 to 255 characters, without NUL.
pub fn device_id_problem(id: &str) -> Option<String> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_DEVICE_ID_CHARS || id.contains('\0') {
        Some(format!(
            "must be 1 to {MAX_DEVICE_ID_CHARS} characters, without NUL"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, provider: &str) -> NewDevice {
        NewDevice {
            id: id.into(),
            push_provider: provider.into(),
            ..Default::default()
        }
    }

    #[test]
    fn providers_and_ids_are_checked() {
        for provider in ["firebase", "apn", "huawei", "xiaomi"] {
            let device = new("token:1", provider).device(7).unwrap();
            assert_eq!(device.push_provider.as_str(), provider);
            assert_eq!(device.created_at, 7);
        }
        assert!(new("d", "sms").device(0).is_err());
        assert!(new("", "apn").device(0).is_err());
        assert!(new(&"d".repeat(256), "apn").device(0).is_err());
        assert!(new(&"d".repeat(255), "apn").device(0).is_ok());
    }

    /// Stored in `devices.push_provider` and snapshots, shown on the wire: these strings never
    /// change, and strum and serde agree on them.
    #[test]
    fn provider_strings_are_pinned() {
        let names: Vec<&str> = PushProvider::iter().map(PushProvider::as_str).collect();
        assert_eq!(names, ["firebase", "apn", "huawei", "xiaomi"]);
        for provider in PushProvider::iter() {
            assert_eq!(provider.as_str().parse(), Ok(provider));
            assert_eq!(
                serde_json::to_value(provider).unwrap(),
                serde_json::json!(provider.as_str())
            );
        }
        let err = new("d", "sms").device(0).unwrap_err().to_string();
        assert!(
            err.contains("must be one of firebase, apn, huawei, xiaomi; got \"sms\""),
            "{err}"
        );
    }

    #[test]
    fn devices_serialize_with_provider_names() {
        let device = new("d1", "apn").device(1).unwrap();
        let json = serde_json::to_value(&device).unwrap();
        assert_eq!(json["push_provider"], "apn");
        assert_eq!(serde_json::from_value::<Device>(json).unwrap(), device);
    }
}
