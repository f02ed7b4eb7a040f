//! `roster.v1.UserService`.
use tonic::{Request, Response, Status};

use super::MAX_BATCH;
use super::convert::{self, struct_to_json, user_fields};
use super::{caller, lifecycle};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::domain::partial::PartialUpdate;
use crate::domain::presence::AsOf;
use crate::domain::query::parse_query;
use crate::error::Error;
use crate::pb::{self, user_service_server::UserService};
use crate::tasks::Hub;
use crate::{domain::task::NewTask, store::Store};

pub struct UserApi {
    store: Store,
    hub: Hub,
}

impl UserApi {
    pub fn new(store: Store, hub: Hub) -> Self {
        UserApi { store, hub }
    }

    /// Enqueues a lifecycle task (the users' state changes commit with it) and wakes the worker.
    async fn enqueue(
        &self,
        task: Result<NewTask, Error>,
    ) -> Result<(String, Vec<crate::domain::user::User>), Status> {
        let (task_id, users) = self.store.enqueue_lifecycle(task?).await?;
        self.hub.work_added();
        self.hub.events_appended();
        Ok((task_id, users))
    }
}

fn batch_size(len: usize) -> Result<(), Status> {
    if len == 0 || len > MAX_BATCH {
        return Err(Error::invalid(
            "users",
            format!("must hold 1 to {MAX_BATCH} users, got {len}"),
        )
        .into());
    }
    Ok(())
}

pub(super) fn user_map(
    users: Vec<crate::domain::user::User>,
    as_of: AsOf,
) -> std::collections::HashMap<String, pb::User> {
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
        let actor = Actor::new(caller(&request), None);
        let users = request.into_inner().users;
        batch_size(users.len())?;
        let mut batch = Vec::with_capacity(users.len());
        for (key, user) in users {
            let at = format!("users[{key}]");
            if user.id != key {
                return Err(Error::invalid(
                    format!("{at}.id"),
                    format!("must equal its map key {key:?}, got {:?}", user.id),
                )
                .into());
            }
            batch.push(user_fields(user, &at)?);
        }
        // A deterministic order keeps lock acquisition and error reports stable.
        batch.sort_by(|a, b| a.id.cmp(&b.id));
        let users = self.store.upsert_users(batch, &actor).await?;
        self.hub.events_appended();
        Ok(Response::new(pb::UpdateUsersResponse {
            users: user_map(users, self.store.as_of_now()),
        }))
    }

    async fn update_users_partial(
        &self,
        request: Request<pb::UpdateUsersPartialRequest>,
    ) -> Result<Response<pb::UpdateUsersPartialResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let users = request.into_inner().users;
        batch_size(users.len())?;
        let mut updates = Vec::with_capacity(users.len());
        for (i, u) in users.into_iter().enumerate() {
            check_id(&format!("users[{i}].id"), &u.id)?;
            let set = match u.set {
                Some(s) => struct_to_json(s, &format!("users[{i}].set"))
                    .map_err(|v| Error::InvalidArgument(vec![v]))?,
                None => Default::default(),
            };
            updates.push(PartialUpdate {
                id: u.id,
                set,
                unset: u.unset,
            });
        }
        let users = self.store.update_users_partial(updates, &actor).await?;
        self.hub.events_appended();
        Ok(Response::new(pb::UpdateUsersPartialResponse {
            users: user_map(users, self.store.as_of_now()),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let req = request.into_inner();
        // No stored user has a malformed id (and PostgreSQL text cannot even hold NUL).
        check_id("id", &req.id)?;
        let user = self.store.get_user(&req.id, req.include_deleted).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(convert::user(user, self.store.as_of_now())),
        }))
    }

    async fn query_users(
        &self,
        request: Request<pb::QueryUsersRequest>,
    ) -> Result<Response<pb::QueryUsersResponse>, Status> {
        let req = request.into_inner();
        let filter = match req.filter {
            Some(s) => {
                Some(struct_to_json(s, "filter").map_err(|v| Error::InvalidArgument(vec![v]))?)
            }
            None => None,
        };
        let sort: Vec<(String, i32)> = req
            .sort
            .into_iter()
            .map(|s| (s.field, s.direction))
            .collect();
        let query = parse_query(
            filter.as_ref(),
            &sort,
            req.limit,
            req.offset,
            &req.page_token,
            req.include_deactivated_users,
        )?;
        let page = self.store.query_users(&query).await?;
        let as_of = self.store.as_of_now();
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
        let (task_id, users) = self
            .enqueue(lifecycle::deactivate_one(
                caller(&request),
                request.into_inner(),
            ))
            .await?;
        Ok(Response::new(pb::DeactivateUserResponse {
            user: users
                .into_iter()
                .next()
                .map(|u| convert::user(u, self.store.as_of_now())),
            task_id,
        }))
    }

    async fn deactivate_users(
        &self,
        request: Request<pb::DeactivateUsersRequest>,
    ) -> Result<Response<pb::DeactivateUsersResponse>, Status> {
        let (task_id, _) = self
            .enqueue(lifecycle::deactivate_many(
                caller(&request),
                request.into_inner(),
            ))
            .await?;
        Ok(Response::new(pb::DeactivateUsersResponse { task_id }))
    }

    async fn reactivate_user(
        &self,
        request: Request<pb::ReactivateUserRequest>,
    ) -> Result<Response<pb::ReactivateUserResponse>, Status> {
        let (task_id, users) = self
            .enqueue(lifecycle::reactivate_one(
                caller(&request),
                request.into_inner(),
            ))
            .await?;
        Ok(Response::new(pb::ReactivateUserResponse {
            user: users
                .into_iter()
                .next()
                .map(|u| convert::user(u, self.store.as_of_now())),
            task_id,
        }))
    }

    async fn reactivate_users(
        &self,
        request: Request<pb::ReactivateUsersRequest>,
    ) -> Result<Response<pb::ReactivateUsersResponse>, Status> {
        let (task_id, _) = self
            .enqueue(lifecycle::reactivate_many(
                caller(&request),
                request.into_inner(),
            ))
            .await?;
        Ok(Response::new(pb::ReactivateUsersResponse { task_id }))
    }

    async fn delete_users(
        &self,
        request: Request<pb::DeleteUsersRequest>,
    ) -> Result<Response<pb::DeleteUsersResponse>, Status> {
        let (task_id, _) = self
            .enqueue(lifecycle::delete_many(
                caller(&request),
                request.into_inner(),
            ))
            .await?;
        Ok(Response::new(pb::DeleteUsersResponse { task_id }))
    }

    async fn restore_users(
        &self,
        request: Request<pb::RestoreUsersRequest>,
    ) -> Result<Response<pb::RestoreUsersResponse>, Status> {
        let (task_id, _) = self
            .enqueue(lifecycle::restore_many(
                caller(&request),
                request.into_inner(),
            ))
            .await?;
        Ok(Response::new(pb::RestoreUsersResponse { task_id }))
    }
}
