//! Users: upsert, partial update, point reads and queries.
use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveValue, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::OnConflict,
};

use super::Store;
use super::entities::user::{self, Column};
use super::events::{self, NewEvent};
use crate::domain::event::{Actor, EventKind};
use crate::domain::partial::{PartialUpdate, Settable};
use crate::domain::query::{UserQuery, next_page_token};
use crate::domain::time::now_micros;
use crate::domain::user::{User, UserFields};
use crate::error::{Error, FieldViolation, Result};

/// Columns a replace or partial update writes; everything else on the row is roster's.
/// (`revoke_tokens_issued_before` is a token setting: a replace keeps it.)
const REPLACED_COLUMNS: [Column; 11] = [
    Column::Name,
    Column::Image,
    Column::Role,
    Column::Custom,
    Column::Language,
    Column::Invisible,
    Column::Teams,
    Column::TeamsRole,
    Column::PrivacySettings,
    Column::PushNotifications,
    Column::UpdatedAt,
];

/// A page of users and the token for the next one.
pub struct UserPage {
    pub users: Vec<User>,
    pub next_page_token: Option<String>,
}

impl Store {
    /// Creates or replaces users, all or nothing. Caller fields are replaced; server fields kept.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(count = batch.len()))]
    pub async fn upsert_users(&self, batch: Vec<UserFields>, actor: &Actor) -> Result<Vec<User>> {
        let mut violations: Vec<FieldViolation> = batch
            .iter()
            .flat_map(|f| f.violations(&format!("users[{}]", f.id)))
            .collect();
        let tx = self.write().await?;
        let scopes = self
            .role_scopes(&tx.txn, batch.iter().flat_map(UserFields::role_names))
            .await?;
        violations.extend(batch.iter().flat_map(|f| {
            f.role_violations(&format!("users[{}]", f.id), |r| scopes.get(r).copied())
        }));
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let mut existing = lock_users(&tx.txn, batch.iter().map(|f| f.id.clone())).await?;
        if let Some(deleted) = existing.values().find(|m| m.deleted_at.is_some()) {
            return Err(Error::UserDeleted(deleted.id.clone()));
        }
        let now = now_micros();
        let mut events = Vec::with_capacity(batch.len());
        let users: Vec<User> = batch
            .into_iter()
            .map(|fields| match existing.remove(&fields.id) {
                Some(row) => (
                    EventKind::UserUpdated,
                    User {
                        fields,
                        updated_at: now,
                        ..User::from(row)
                    },
                ),
                None => (EventKind::UserCreated, User::new(fields, now)),
            })
            .map(|(kind, user)| {
                events.push(NewEvent::user(kind, &user));
                user
            })
            .collect();
        user::Entity::insert_many(users.iter().map(|u| active(user::Model::from(u))))
            .on_conflict(
                OnConflict::column(Column::Id)
                    .update_columns(REPLACED_COLUMNS)
                    .to_owned(),
            )
            .exec_without_returning(&tx.txn)
            .await?;
        events::append(&tx.txn, actor, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// Applies partial updates, all or nothing; each user is locked while it is read, merged and
    /// written, so concurrent updates of different keys all survive.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(count = updates.len()))]
    pub async fn update_users_partial(
        &self,
        updates: Vec<PartialUpdate>,
        actor: &Actor,
    ) -> Result<Vec<User>> {
        let mut seen = HashSet::new();
        for (i, update) in updates.iter().enumerate() {
            if !seen.insert(update.id.as_str()) {
                return Err(Error::invalid(
                    format!("users[{i}].id"),
                    "appears twice in the batch",
                ));
            }
        }
        let tx = self.write().await?;
        let mut rows = lock_users(&tx.txn, updates.iter().map(|u| u.id.clone())).await?;
        let now = now_micros();
        let mut users = Vec::with_capacity(updates.len());
        let mut violations = Vec::new();
        for (i, update) in updates.iter().enumerate() {
            let row = rows
                .remove(&update.id)
                .ok_or_else(|| Error::UserNotFound(update.id.clone()))?;
            if row.deleted_at.is_some() {
                return Err(Error::UserDeleted(row.id));
            }
            let mut user = User::from(row);
            let at = format!("users[{i}]");
            let current = Settable {
                fields: user.fields.clone(),
                revoke_tokens_issued_before: user.revoke_tokens_issued_before,
            };
            match update.apply(&current, &at) {
                Ok(next) => {
                    violations.extend(next.fields.violations(&at));
                    user.fields = next.fields;
                    user.revoke_tokens_issued_before = next.revoke_tokens_issued_before;
                    user.updated_at = now;
                    users.push(user);
                }
                Err(v) => violations.extend(v),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let scopes = self
            .role_scopes(&tx.txn, users.iter().flat_map(|u| u.fields.role_names()))
            .await?;
        let violations: Vec<FieldViolation> = users
            .iter()
            .enumerate()
            .flat_map(|(i, u)| {
                u.fields
                    .role_violations(&format!("users[{i}]"), |r| scopes.get(r).copied())
            })
            .collect();
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        for user in &users {
            let mut model = active(user::Model::from(user));
            model.id = ActiveValue::Unchanged(user.fields.id.clone());
            model.created_at = ActiveValue::NotSet;
            model.deactivated_at = ActiveValue::NotSet;
            model.deleted_at = ActiveValue::NotSet;
            model.last_active = ActiveValue::NotSet;
            model.avg_response_time = ActiveValue::NotSet;
            model.pruned_at = ActiveValue::NotSet;
            user::Entity::update(model).exec(&tx.txn).await?;
        }
        let events = users
            .iter()
            .map(|u| NewEvent::user(EventKind::UserUpdated, u))
            .collect();
        events::append(&tx.txn, actor, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// One user; a deleted user only with `include_deleted`.
    #[tracing::instrument(skip(self), err(level = "debug"))]
    pub async fn get_user(&self, id: &str, include_deleted: bool) -> Result<User> {
        match user::Entity::find_by_id(id.to_owned())
            .one(self.conn())
            .await?
        {
            Some(row) if include_deleted || row.deleted_at.is_none() => Ok(row.into()),
            _ => Err(Error::UserNotFound(id.to_owned())),
        }
    }

    /// One page of a query (deleted users never appear).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn query_users(&self, query: &UserQuery) -> Result<UserPage> {
        let statement = super::query_sql::select_users(query, self.backend())?;
        let rows = user::Entity::find()
            .from_raw_sql(statement)
            .all(self.conn())
            .await?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        let users: Vec<User> = rows.into_iter().take(limit).map(User::from).collect();
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

/// Reads the given users, locking their rows (PostgreSQL; SQLite's write transaction already
/// excludes other writers) in id order so that concurrent batches cannot deadlock.
async fn lock_users(
    txn: &sea_orm::DatabaseTransaction,
    ids: impl Iterator<Item = String>,
) -> Result<HashMap<String, user::Model>> {
    let rows = user::Entity::find()
        .filter(Column::Id.is_in(ids))
        .order_by_asc(Column::Id)
        .lock_exclusive()
        .all(txn)
        .await?;
    Ok(rows.into_iter().map(|m| (m.id.clone(), m)).collect())
}

fn active(model: user::Model) -> user::ActiveModel {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    model.into_active_model().reset_all()
}
