//! Push devices of a user.
use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::device::{Device, NewDevice, device_id_problem};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::error::{Error, Result};

impl App {
    pub async fn create_device(
        &self,
        caller: &Caller,
        user_id: &str,
        device: NewDevice,
    ) -> Result<Device> {
        self.admit(caller, Scope::UsersWrite)?;
        check_id("user_id", user_id)?;
        let device = self
            .store
            .create_device(user_id, device, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(device)
    }

    pub async fn list_devices(&self, caller: &Caller, user_id: &str) -> Result<Vec<Device>> {
        self.admit(caller, Scope::UsersRead)?;
        check_id("user_id", user_id)?;
        self.store.list_devices(user_id).await
    }

    pub async fn delete_device(
        &self,
        caller: &Caller,
        user_id: &str,
        device_id: &str,
    ) -> Result<()> {
        self.admit(caller, Scope::UsersWrite)?;
        check_id("user_id", user_id)?;
        if let Some(problem) = device_id_problem(device_id) {
            return Err(Error::invalid("id", problem));
        }
        self.store
            .delete_device(user_id, device_id, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(())
    }
}
