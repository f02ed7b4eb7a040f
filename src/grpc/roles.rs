//! `roster.v1.RoleService`.
use tonic::{Request, Response, Status};

use super::caller;
use crate::app::App;
use crate::grpc::pb::{self, role_service_server::RoleService};

pub struct RoleApi {
    app: App,
}

impl RoleApi {
    pub fn new(app: App) -> Self {
        RoleApi { app }
    }
}

#[tonic::async_trait]
impl RoleService for RoleApi {
    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Result<Response<pb::CreateRoleResponse>, Status> {
        let caller = caller(&request);
        let role = self
            .app
            .create_role(&caller, &request.into_inner().name)
            .await?;
        Ok(Response::new(pb::CreateRoleResponse {
            role: Some(role.into()),
        }))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let caller = caller(&request);
        let roles = self.app.list_roles(&caller).await?;
        Ok(Response::new(pb::ListRolesResponse {
            roles: roles.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Result<Response<pb::DeleteRoleResponse>, Status> {
        let caller = caller(&request);
        self.app
            .delete_role(&caller, &request.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }
}
