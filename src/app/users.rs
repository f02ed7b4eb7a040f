//! Users: upsert (whole), partial update, read, query.
use serde_json::{Map, Value};

use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::domain::partial::PartialUpdate;
use crate::domain::query::parse_query;
use crate::domain::user::{User, UserFields, check_batch};
use crate::error::{Error, Result};
use crate::store::UserPage;

/// A QueryUsers request as a door received it.
#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    /// The filter, as JSON; `None` matches every user.
    pub filter: Option<Map<String, Value>>,
    /// `(field, direction)` pairs: 1 ascending, -1 descending.
    pub sort: Vec<(String, i32)>,
    pub limit: u32,
    pub offset: u32,
    pub page_token: String,
    pub include_deactivated_users: bool,
}

impl App {
    /// UpdateUsers: creates each user, or replaces it whole. `users` yields `(key, fields)` pairs,
    /// converted by the door as they are taken, so that a batch of the wrong size is refused
    /// before any of it is converted. A user's `id` must equal its key.
    pub async fn upsert_users<I>(&self, caller: &Caller, users: I) -> Result<Vec<User>>
    where
        I: ExactSizeIterator<Item = Result<(String, UserFields)>>,
    {
        self.admit(caller, Scope::UsersWrite)?;
        check_batch(users.len())?;
        let mut batch = Vec::with_capacity(users.len());
        for user in users {
            let (key, fields) = user?;
            if fields.id != key {
                return Err(Error::invalid(
                    format!("users[{key}].id"),
                    format!("must equal its map key {key:?}, got {:?}", fields.id),
                ));
            }
            batch.push(fields);
        }
        // A deterministic order keeps lock acquisition and error reports stable.
        batch.sort_by(|a, b| a.id.cmp(&b.id));
        let users = self
            .store
            .upsert_users(batch, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(users)
    }

    /// UpdateUsersPartial: sets and unsets fields of existing users. Like `upsert_users`, the
    /// door converts each update as it is taken.
    pub async fn update_users_partial<I>(&self, caller: &Caller, updates: I) -> Result<Vec<User>>
    where
        I: ExactSizeIterator<Item = Result<PartialUpdate>>,
    {
        self.admit(caller, Scope::UsersWrite)?;
        check_batch(updates.len())?;
        let mut batch = Vec::with_capacity(updates.len());
        for (i, update) in updates.enumerate() {
            let update = update?;
            check_id(&format!("users[{i}].id"), &update.id)?;
            batch.push(update);
        }
        let users = self
            .store
            .update_users_partial(batch, &Actor::new(caller.name(), None))
            .await?;
        self.bus.events_appended();
        Ok(users)
    }

    /// GetUser: one user; a deleted one only when asked for.
    pub async fn get_user(&self, caller: &Caller, id: &str, include_deleted: bool) -> Result<User> {
        self.admit(caller, Scope::UsersRead)?;
        // No stored user has a malformed id (and PostgreSQL text cannot even hold NUL).
        check_id("id", id)?;
        self.store.get_user(id, include_deleted).await
    }

    /// QueryUsers: one page of the users a filter matches.
    pub async fn query_users(&self, caller: &Caller, request: &QueryRequest) -> Result<UserPage> {
        self.admit(caller, Scope::UsersRead)?;
        let query = parse_query(
            request.filter.as_ref(),
            &request.sort,
            request.limit,
            request.offset,
            &request.page_token,
            request.include_deactivated_users,
        )?;
        self.store.query_users(&query).await
    }
}
