//! Roles: the names a user's `role` may take.
use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::event::Actor;
use crate::domain::role::Role;
use crate::error::Result;

impl App {
    pub async fn create_role(&self, caller: &Caller, name: &str) -> Result<Role> {
        self.admit(caller, Scope::RolesWrite)?;
        let role = self
            .store
            .create_role(name, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(role)
    }

    pub async fn list_roles(&self, caller: &Caller) -> Result<Vec<Role>> {
        self.admit(caller, Scope::UsersRead)?;
        self.store.list_roles().await
    }

    pub async fn delete_role(&self, caller: &Caller, name: &str) -> Result<()> {
        self.admit(caller, Scope::RolesWrite)?;
        self.store
            .delete_role(name, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(())
    }
}
