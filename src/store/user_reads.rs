//! Users as callers read them: one by id (GetUser, through the coalesced point reads), several
//! by id, and pages of a query. Row shapes live in `user_rows`, writes in `users`.
use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Store;
use super::entities::user::{self, Column};
use super::user_rows::{fetch_rows, load_users, rows_of, users_by_id};
use crate::domain::query::{UserQuery, next_page_token};
use crate::domain::user::User;
use crate::error::{Error, Result};

/// A page of users and the token for the next one.
pub struct UserPage {
    pub users: Vec<User>,
    pub next_page_token: Option<String>,
}

impl Store {
    /// One user; a deleted user only with `include_deleted`.
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn get_user(&self, id: &str, include_deleted: bool) -> Result<User> {
        match self.point_reads.read(self.conn(), id).await? {
            Some(user) if include_deleted || user.deleted_at.is_none() => Ok(user),
            _ => Err(Error::UserNotFound(id.to_owned())),
        }
    }

    /// One user with its devices and blocks, deleted or not; `None` when there is no such row.
    pub(crate) async fn find_user(&self, id: &str) -> Result<Option<User>> {
        Ok(users_by_id(self.conn(), vec![id.to_owned()]).await?.pop())
    }

    /// The given users that exist and are not deleted, with devices and blocks, by id.
    pub(crate) async fn visible_users(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, User>> {
        let rows = fetch_rows(
            self.conn(),
            user::Entity::find()
                .filter(Column::Id.is_in(ids))
                .filter(Column::DeletedAt.is_null()),
        )
        .await?;
        let users = load_users(self.conn(), rows).await?;
        Ok(users
            .into_iter()
            .map(|u| (u.fields.id.clone(), u))
            .collect())
    }

    /// One page of a query (deleted users never appear).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn query_users(&self, query: &UserQuery) -> Result<UserPage> {
        let statement = super::query_sql::select_users(query, self.backend(), self.as_of_now())?;
        let mut rows = rows_of(self.conn(), statement).await?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let users = load_users(self.conn(), rows).await?;
        let next_page_token = match users.last() {
            Some(last) if more => Some(next_page_token(query, last)),
            _ => None,
        };
        Ok(UserPage {
            users,
            next_page_token,
        })
    }
}
