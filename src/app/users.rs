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
    /// Bounds on `id` besides the filter (Stream's `id_gt` and friends).
    pub id_range: IdRange,
}

/// Bounds on a user's `id`, each optional: `id_gt`, `id_gte`, `id_lt`, `id_lte`.
#[derive(Debug, Clone, Default)]
pub struct IdRange {
    pub gt: Option<String>,
    pub gte: Option<String>,
    pub lt: Option<String>,
    pub lte: Option<String>,
}

impl IdRange {
    /// `filter` narrowed by these bounds: the same filter language, so the same rules and
    /// errors (`{"$and": [filter, {"id": {"$gt": ..}}]}`).
    fn narrow(&self, filter: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
        let bounds: Map<String, Value> = [
            ("$gt", &self.gt),
            ("$gte", &self.gte),
            ("$lt", &self.lt),
            ("$lte", &self.lte),
        ]
        .into_iter()
        .filter_map(|(op, bound)| Some((op.to_owned(), Value::String(bound.clone()?))))
        .collect();
        if bounds.is_empty() {
            return filter.cloned();
        }
        let on_id = serde_json::json!({ "id": bounds });
        let narrowed = match filter {
            Some(filter) if !filter.is_empty() => {
                serde_json::json!({ "$and": [Value::Object(filter.clone()), on_id] })
            }
            _ => on_id,
        };
        match narrowed {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
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
        let filter = request.id_range.narrow(request.filter.as_ref());
        let query = parse_query(
            filter.as_ref(),
            &request.sort,
            request.limit,
            request.offset,
            &request.page_token,
            request.include_deactivated_users,
        )?;
        self.store.query_users(&query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_bounds_narrow_the_filter_with_and() {
        let none = IdRange::default();
        assert_eq!(none.narrow(None), None);
        let range = IdRange {
            gt: Some("a".into()),
            lte: Some("m".into()),
            ..Default::default()
        };
        assert_eq!(
            Value::Object(range.narrow(None).unwrap()),
            json!({"id": {"$gt": "a", "$lte": "m"}})
        );
        let filter = json!({"role": "admin"});
        let filter = filter.as_object().unwrap();
        assert_eq!(
            Value::Object(range.narrow(Some(filter)).unwrap()),
            json!({"$and": [{"role": "admin"}, {"id": {"$gt": "a", "$lte": "m"}}]})
        );
    }
}
