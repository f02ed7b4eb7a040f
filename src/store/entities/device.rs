use sea_orm::entity::prelude::*;

use crate::domain::device::{Device, PushProvider};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub push_provider: String,
    pub push_provider_name: Option<String>,
    pub voip: bool,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// Rows are only written from checked devices; a provider roster does not know can only come
    /// from outside roster and reads as `firebase` rather than failing every read of the user.
    pub fn into_device(self) -> Device {
        Device {
            push_provider: self.push_provider.parse().unwrap_or(PushProvider::Firebase),
            id: self.id,
            push_provider_name: self.push_provider_name,
            voip: self.voip,
            created_at: self.created_at,
        }
    }

    pub fn of(user_id: &str, device: &Device) -> Self {
        Model {
            user_id: user_id.to_owned(),
            id: device.id.clone(),
            push_provider: device.push_provider.as_str().to_owned(),
            push_provider_name: device.push_provider_name.clone(),
            voip: device.voip,
            created_at: device.created_at,
        }
    }
}
