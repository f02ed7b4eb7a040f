//! Devices registered for push notifications.
use serde::{Deserialize, Serialize};

use super::time::Micros;
use crate::error::{Error, FieldViolation};

/// Most devices a user keeps; adding one more replaces the oldest.
pub const MAX_DEVICES_PER_USER: usize = 25;
pub const MAX_DEVICE_ID_CHARS: usize = 255;
pub const MAX_PUSH_PROVIDER_NAME_CHARS: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushProvider {
    Firebase,
    Apn,
    Huawei,
    Xiaomi,
}

impl PushProvider {
    pub const ALL: [PushProvider; 4] = [
        PushProvider::Firebase,
        PushProvider::Apn,
        PushProvider::Huawei,
        PushProvider::Xiaomi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushProvider::Firebase => "firebase",
            PushProvider::Apn => "apn",
            PushProvider::Huawei => "huawei",
            PushProvider::Xiaomi => "xiaomi",
        }
    }

    pub fn parse(text: &str) -> Option<PushProvider> {
        PushProvider::ALL.into_iter().find(|p| p.as_str() == text)
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
        let provider = PushProvider::parse(&self.push_provider);
        if provider.is_none() {
            bad.push(FieldViolation::new(
                "push_provider",
                format!(
                    "must be one of firebase, apn, huawei, xiaomi; got {:?}",
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

    #[test]
    fn devices_serialize_with_provider_names() {
        let device = new("d1", "apn").device(1).unwrap();
        let json = serde_json::to_value(&device).unwrap();
        assert_eq!(json["push_provider"], "apn");
        assert_eq!(serde_json::from_value::<Device>(json).unwrap(), device);
    }
}
