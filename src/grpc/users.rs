//! `roster.v1.UserService`.
use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{self, struct_to_map, user_fields};
use crate::app::{App, QueryRequest};
use crate::domain::access::Caller;
use crate::domain::lifecycle::DeleteOptionsInput;
use crate::domain::lifecycle_request::LifecycleRequest;
use crate::domain::partial::PartialUpdate;
use crate::domain::presence::AsOf;
use crate::domain::user::User;
use crate::grpc::pb::{self, user_service_server::UserService};

pub struct UserApi {
    app: App,
}

impl UserApi {
    pub fn new(app: App) -> Self {
        UserApi { app }
    }

    /// A one-user lifecycle call: the task id and the user as it now is.
    async fn one(
        &self,
        caller: &Caller,
        request: LifecycleRequest,
    ) -> Result<(String, Option<pb::User>), Status> {
        let (task_id, users) = self.app.enqueue_lifecycle(caller, request).await?;
        let as_of = self.app.as_of_now();
        Ok((
            task_id,
            users.into_iter().next().map(|u| convert::user(u, as_of)),
        ))
    }

    /// A many-user lifecycle call: the task id.
    async fn many(&self, caller: &Caller, request: LifecycleRequest) -> Result<String, Status> {
        Ok(self.app.enqueue_lifecycle(caller, request).await?.0)
    }
}

/// Users by id, as batch answers carry them.
pub(super) fn user_map(users: Vec<User>, as_of: AsOf) -> HashMap<String, pb::User> {
    users
        .into_iter()
        .map(|u| (u.fields.id.clone(), convert::user(u, as_of)))
        .collect()
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn update_users(
        &self,
        request: Request<pb::UpdateUsersRequest>,
    ) -> Result<Response<pb::UpdateUsersResponse>, Status> {
        let caller = caller(&request);
        let users = request.into_inner().users.into_iter().map(|(key, user)| {
            let fields = user_fields(user, &format!("users[{key}]"))?;
            Ok((key, fields))
        });
        let users = self.app.upsert_users(&caller, users).await?;
        Ok(Response::new(pb::UpdateUsersResponse {
            users: user_map(users, self.app.as_of_now()),
        }))
    }

    async fn update_users_partial(
        &self,
        request: Request<pb::UpdateUsersPartialRequest>,
    ) -> Result<Response<pb::UpdateUsersPartialResponse>, Status> {
        let caller = caller(&request);
        let updates = request
            .into_inner()
            .users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                Ok(PartialUpdate {
                    id: u.id,
                    set: match u.set {
                        Some(s) => struct_to_map(s, &format!("users[{i}].set"))?,
                        None => Default::default(),
                    },
                    unset: u.unset,
                })
            });
        let users = self.app.update_users_partial(&caller, updates).await?;
        Ok(Response::new(pb::UpdateUsersPartialResponse {
            users: user_map(users, self.app.as_of_now()),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let user = self
            .app
            .get_user(&caller, &req.id, req.include_deleted)
            .await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(convert::user(user, self.app.as_of_now())),
        }))
    }

    async fn query_users(
        &self,
        request: Request<pb::QueryUsersRequest>,
    ) -> Result<Response<pb::QueryUsersResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let query = QueryRequest {
            filter: req.filter.map(|s| struct_to_map(s, "filter")).transpose()?,
            sort: req
                .sort
                .into_iter()
                .map(|s| (s.field, s.direction))
                .collect(),
            limit: req.limit,
            offset: req.offset,
            page_token: req.page_token,
            include_deactivated_users: req.include_deactivated_users,
            id_range: Default::default(),
        };
        let page = self.app.query_users(&caller, &query).await?;
        let as_of = self.app.as_of_now();
        Ok(Response::new(pb::QueryUsersResponse {
            users: page
                .users
                .into_iter()
                .map(|u| convert::user(u, as_of))
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn deactivate_user(
        &self,
        request: Request<pb::DeactivateUserRequest>,
    ) -> Result<Response<pb::DeactivateUserResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let (task_id, user) = self
            .one(
                &caller,
                LifecycleRequest::DeactivateOne {
                    user_id: r.user_id,
                    mark_messages_deleted: r.mark_messages_deleted,
                    created_by_id: r.created_by_id,
                },
            )
            .await?;
        Ok(Response::new(pb::DeactivateUserResponse { user, task_id }))
    }

    async fn deactivate_users(
        &self,
        request: Request<pb::DeactivateUsersRequest>,
    ) -> Result<Response<pb::DeactivateUsersResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let task_id = self
            .many(
                &caller,
                LifecycleRequest::DeactivateMany {
                    user_ids: r.user_ids,
                    mark_messages_deleted: r.mark_messages_deleted,
                    mark_channels_deleted: r.mark_channels_deleted,
                    created_by_id: r.created_by_id,
                    request_id: r.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::DeactivateUsersResponse { task_id }))
    }

    async fn reactivate_user(
        &self,
        request: Request<pb::ReactivateUserRequest>,
    ) -> Result<Response<pb::ReactivateUserResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let (task_id, user) = self
            .one(
                &caller,
                LifecycleRequest::ReactivateOne {
                    user_id: r.user_id,
                    restore_messages: r.restore_messages,
                    created_by_id: r.created_by_id,
                    name: r.name,
                },
            )
            .await?;
        Ok(Response::new(pb::ReactivateUserResponse { user, task_id }))
    }

    async fn reactivate_users(
        &self,
        request: Request<pb::ReactivateUsersRequest>,
    ) -> Result<Response<pb::ReactivateUsersResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let task_id = self
            .many(
                &caller,
                LifecycleRequest::ReactivateMany {
                    user_ids: r.user_ids,
                    restore_messages: r.restore_messages,
                    restore_channels: r.restore_channels,
                    created_by_id: r.created_by_id,
                    request_id: r.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::ReactivateUsersResponse { task_id }))
    }

    async fn delete_users(
        &self,
        request: Request<pb::DeleteUsersRequest>,
    ) -> Result<Response<pb::DeleteUsersResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let options = DeleteOptionsInput {
            user: r.user,
            conversations: r.conversations,
            messages: r.messages,
            calls: r.calls,
            files: r.files,
            new_channel_owner_id: r.new_channel_owner_id.unwrap_or_default(),
            new_call_owner_id: r.new_call_owner_id.unwrap_or_default(),
        };
        let task_id = self
            .many(
                &caller,
                LifecycleRequest::Delete {
                    user_ids: r.user_ids,
                    options,
                    created_by_id: r.created_by_id,
                    request_id: r.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::DeleteUsersResponse { task_id }))
    }

    async fn restore_users(
        &self,
        request: Request<pb::RestoreUsersRequest>,
    ) -> Result<Response<pb::RestoreUsersResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let task_id = self
            .many(
                &caller,
                LifecycleRequest::Restore {
                    user_ids: r.user_ids,
                    created_by_id: r.created_by_id,
                    request_id: r.request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::RestoreUsersResponse { task_id }))
    }
}
