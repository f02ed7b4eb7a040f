//! `roster.v1.RoleService`.
use tonic::{Request, Response, Status};

use super::caller;
use crate::domain::event::Actor;
use crate::pb::{self, role_service_server::RoleService};
use crate::store::Store;
use crate::tasks::Hub;

pub struct RoleApi {
    store: Store,
    hub: Hub,
}

impl RoleApi {
    pub fn new(store: Store, hub: Hub) -> Self {
        RoleApi { store, hub }
    }
}

#[tonic::async_trait]
impl RoleService for RoleApi {
    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Result<Response<pb::CreateRoleResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let role = self
            .store
            .create_role(&request.into_inner().name, &actor)
            .await?;
        self.hub.events_appended();
        Ok(Response::new(pb::CreateRoleResponse {
            role: Some(role.into()),
        }))
    }

    async fn list_roles(
        &self,
        _request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let roles = self.store.list_roles().await?;
        Ok(Response::new(pb::ListRolesResponse {
            roles: roles.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Result<Response<pb::DeleteRoleResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        self.store
            .delete_role(&request.into_inner().name, &actor)
            .await?;
        self.hub.events_appended();
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }
}
