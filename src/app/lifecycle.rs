//! Deactivate, reactivate, delete and restore: each request becomes a durable task, and the
//! users' state changes commit with it.
use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::lifecycle_request::LifecycleRequest;
use crate::domain::user::User;
use crate::error::Result;

impl App {
    /// Enqueues the task `request` asks for and wakes the worker. The task id, and for a one-user
    /// request the user as it now is (those act at once; the task carries their product calls).
    pub async fn enqueue_lifecycle(
        &self,
        caller: &Caller,
        request: LifecycleRequest,
    ) -> Result<(String, Vec<User>)> {
        self.admit(caller, Scope::LifecycleWrite)?;
        let task = request.check(caller.name())?;
        let (task_id, users) = self.store.enqueue_lifecycle(task).await?;
        self.bus.work_added();
        self.bus.events_appended();
        Ok((task_id, users))
    }
}
