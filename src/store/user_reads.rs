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
        match self.point_reads.read(self.point_conn(), id).await? {
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
        if let Some(id) = query.single_id() {
            // One id and nothing else (how Stream's SDKs get a user): GetUser's coalesced read,
            // which under load shares one statement among many reads.
            let user = self.point_reads.read(self.point_conn(), id).await?;
            return Ok(UserPage {
                users: user.filter(|u| query.may_show(u)).into_iter().collect(),
                next_page_token: None,
            });
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::domain::event::Actor;
    use crate::domain::query::{UserQuery, parse_query};
    use crate::domain::task::{NewTask, TaskKind, TaskPayload};
    use crate::domain::user::UserFields;
    use crate::store::testing::on_every_store;

    fn by_id(filter: serde_json::Value, include_deactivated: bool) -> UserQuery {
        parse_query(filter.as_object(), &[], 10, 0, "", include_deactivated).expect("query")
    }

    /// A query for one id is GetUser's point read (one coalesced statement, no query of its
    /// own), and it shows what the general query would: never a deleted user, a deactivated one
    /// only when asked for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_for_one_id_is_a_point_read_with_the_query_rules() {
        on_every_store(|store, _clock| async move {
            let ids = ["live", "off"].map(UserFields::with_id).to_vec();
            store
                .upsert_users(ids, &Actor::default())
                .await
                .expect("users");
            store
                .enqueue_lifecycle(NewTask {
                    kind: TaskKind::DeactivateUsers,
                    user_ids: vec!["off".into()],
                    payload: TaskPayload::V1(Default::default()),
                    request_id: None,
                })
                .await
                .expect("deactivate");
            let ids_of = |page: super::UserPage| -> Vec<String> {
                page.users.into_iter().map(|u| u.fields.id).collect()
            };
            let before = store.point_reads.statements();
            for filter in [json!({"id": "live"}), json!({"id": {"$in": ["live"]}})] {
                let page = store
                    .query_users(&by_id(filter, false))
                    .await
                    .expect("query");
                assert_eq!(page.next_page_token, None);
                assert_eq!(ids_of(page), ["live"]);
            }
            let off = store.query_users(&by_id(json!({"id": "off"}), false)).await;
            assert!(
                ids_of(off.expect("query")).is_empty(),
                "deactivated, not asked for"
            );
            let off = store.query_users(&by_id(json!({"id": "off"}), true)).await;
            assert_eq!(ids_of(off.expect("query")), ["off"]);
            let none = store
                .query_users(&by_id(json!({"id": "nobody"}), true))
                .await;
            assert!(ids_of(none.expect("query")).is_empty());
            assert_eq!(
                store.point_reads.statements() - before,
                5,
                "each a point read"
            );
        })
        .await;
    }
}
