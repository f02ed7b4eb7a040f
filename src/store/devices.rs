//! Devices: at most 25 per user, the oldest replaced by a 26th. Writes lock the user, so the
//! count cannot be overtaken by a concurrent CreateDevice.
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::Store;
use super::entities::device::{self, Column as D};
use super::events::{self, NewEvent};
use super::moderation::touch_updated_at;
use super::user_rows::lock_live_user;
use crate::domain::device::{Device, MAX_DEVICES_PER_USER, NewDevice};
use crate::domain::event::{Actor, EventKind};
use crate::error::{Error, Result};

impl Store {
    /// Registers a device. A device the user already has is returned as it is (a no-op); with
    /// 25 devices already, the oldest ones make room.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(user_id = %user_id))]
    pub async fn create_device(
        &self,
        user_id: &str,
        new: NewDevice,
        actor: &Actor,
    ) -> Result<Device> {
        let mut device = new.device(self.now())?;
        let mut tx = self.write().await?;
        let mut user = lock_live_user(&tx.txn, user_id).await?;
        let now = tx.now();
        device.created_at = now;
        if let Some(existing) = user.devices.iter().find(|d| d.id == device.id) {
            return Ok(existing.clone());
        }
        let mut events = Vec::new();
        // `devices` is oldest first.
        let excess = (user.devices.len() + 1).saturating_sub(MAX_DEVICES_PER_USER);
        let replaced: Vec<Device> = user.devices.drain(..excess).collect();
        for old in &replaced {
            device::Entity::delete_by_id((user_id.to_owned(), old.id.clone()))
                .exec(&tx.txn)
                .await?;
        }
        if !replaced.is_empty() {
            user.updated_at = now;
            events.push(NewEvent::user(EventKind::UserDeviceRemoved, &user));
        }
        let row = device::Model::of(user_id, &device);
        device::Entity::insert(device::ActiveModel {
            user_id: Set(row.user_id),
            id: Set(row.id),
            push_provider: Set(row.push_provider),
            push_provider_name: Set(row.push_provider_name),
            voip: Set(row.voip),
            created_at: Set(row.created_at),
        })
        .exec_without_returning(&tx.txn)
        .await?;
        touch_updated_at(&tx.txn, user_id, now).await?;
        user.devices.push(device.clone());
        user.updated_at = now;
        events.push(NewEvent::user(EventKind::UserDeviceAdded, &user));
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(device)
    }

    /// A user's devices, oldest first.
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn list_devices(&self, user_id: &str) -> Result<Vec<Device>> {
        Ok(self.get_user(user_id, false).await?.devices)
    }

    /// Removes one device.
    #[tracing::instrument(level = "debug", skip(self, actor), err(level = "debug"))]
    pub async fn delete_device(&self, user_id: &str, device_id: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.write().await?;
        let mut user = lock_live_user(&tx.txn, user_id).await?;
        let now = tx.now();
        let removed = device::Entity::delete_many()
            .filter(D::UserId.eq(user_id.to_owned()))
            .filter(D::Id.eq(device_id.to_owned()))
            .exec(&tx.txn)
            .await?;
        if removed.rows_affected == 0 {
            return Err(Error::DeviceNotFound {
                user_id: user_id.to_owned(),
                device_id: device_id.to_owned(),
            });
        }
        touch_updated_at(&tx.txn, user_id, now).await?;
        user.devices.retain(|d| d.id != device_id);
        user.updated_at = now;
        events::append(
            &tx.txn,
            actor,
            now,
            vec![NewEvent::user(EventKind::UserDeviceRemoved, &user)],
        )
        .await?;
        tx.commit().await
    }
}
