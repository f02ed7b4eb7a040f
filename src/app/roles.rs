//! Roles: the names a user's `role` may take.
use super::App;
use crate::domain::event::Actor;
use crate::domain::role::Role;
use crate::error::Result;

impl App {
    pub async fn create_role(&self, caller: Option<String>, name: &str) -> Result<Role> {
        let role = self
            .store
            .create_role(name, &Actor::new(caller, None))
            .await?;
        self.bus.events_appended();
        Ok(role)
    }

    pub async fn list_roles(&self) -> Result<Vec<Role>> {
        self.store.list_roles().await
    }

    pub async fn delete_role(&self, caller: Option<String>, name: &str) -> Result<()> {
        self.store
            .delete_role(name, &Actor::new(caller, None))
            .await?;
        self.bus.events_appended();
        Ok(())
    }
}
