//! Users: upsert, partial update, point reads and queries.
use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::OnConflict,
};

use super::Store;
use super::entities::user::{self, Column};
use super::entities::{device, user_block};
use super::events::{self, NewEvent};
use crate::domain::event::{Actor, EventKind};
use crate::domain::partial::{PartialUpdate, Settable};
use crate::domain::query::{UserQuery, next_page_token};
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
        let now = self.now();
        let mut kinds = Vec::with_capacity(batch.len());
        let mut users: Vec<User> = batch
            .into_iter()
            .map(|fields| match existing.remove(&fields.id) {
                Some(row) => {
                    kinds.push(EventKind::UserUpdated);
                    User {
                        fields,
                        updated_at: now,
                        ..User::from(row)
                    }
                }
                None => {
                    kinds.push(EventKind::UserCreated);
                    User::new(fields, now)
                }
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
        attach_relations(&tx.txn, &mut users).await?;
        let events = kinds
            .into_iter()
            .zip(&users)
            .map(|(kind, user)| NewEvent::user(kind, user))
            .collect();
        events::append(&tx.txn, actor, now, events).await?;
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
        let now = self.now();
        let mut users = Vec::with_capacity(updates.len());
        // Users whose update set a new revocation time: the feed says so with its own event.
        let mut revoked = HashSet::new();
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
                    if next.revoke_tokens_issued_before.is_some()
                        && next.revoke_tokens_issued_before != user.revoke_tokens_issued_before
                    {
                        revoked.insert(user.fields.id.clone());
                    }
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
            model.banned_at = ActiveValue::NotSet;
            model.ban_expires = ActiveValue::NotSet;
            model.ban_reason = ActiveValue::NotSet;
            model.shadow_banned = ActiveValue::NotSet;
            model.banned_by_id = ActiveValue::NotSet;
            user::Entity::update(model).exec(&tx.txn).await?;
        }
        attach_relations(&tx.txn, &mut users).await?;
        let mut events = Vec::with_capacity(users.len() + revoked.len());
        for user in &users {
            events.push(NewEvent::user(EventKind::UserUpdated, user));
            if revoked.contains(&user.fields.id) {
                events.push(NewEvent::user(EventKind::UserTokensRevoked, user));
            }
        }
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// One user; a deleted user only with `include_deleted`.
    #[tracing::instrument(skip(self), err(level = "debug"))]
    pub async fn get_user(&self, id: &str, include_deleted: bool) -> Result<User> {
        match self.find_user(id).await? {
            Some(user) if include_deleted || user.deleted_at.is_none() => Ok(user),
            _ => Err(Error::UserNotFound(id.to_owned())),
        }
    }

    /// One user with its devices and blocks, deleted or not; `None` when there is no such row.
    pub(crate) async fn find_user(&self, id: &str) -> Result<Option<User>> {
        let Some(row) = user::Entity::find_by_id(id.to_owned())
            .one(self.conn())
            .await?
        else {
            return Ok(None);
        };
        let mut users = [User::from(row)];
        attach_relations(self.conn(), &mut users).await?;
        let [user] = users;
        Ok(Some(user))
    }

    /// The given users that exist and are not deleted, with devices and blocks, by id.
    pub(crate) async fn visible_users(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, User>> {
        let rows = user::Entity::find()
            .filter(Column::Id.is_in(ids))
            .filter(Column::DeletedAt.is_null())
            .all(self.conn())
            .await?;
        let mut users: Vec<User> = rows.into_iter().map(User::from).collect();
        attach_relations(self.conn(), &mut users).await?;
        Ok(users
            .into_iter()
            .map(|u| (u.fields.id.clone(), u))
            .collect())
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
        let mut users: Vec<User> = rows.into_iter().take(limit).map(User::from).collect();
        attach_relations(self.conn(), &mut users).await?;
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
pub(crate) async fn lock_users(
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

/// Locks one user for a write that needs it to exist and not be deleted.
pub(crate) async fn lock_live_user(txn: &sea_orm::DatabaseTransaction, id: &str) -> Result<User> {
    let row = lock_users(txn, std::iter::once(id.to_owned()))
        .await?
        .remove(id)
        .ok_or_else(|| Error::UserNotFound(id.to_owned()))?;
    if row.deleted_at.is_some() {
        return Err(Error::UserDeleted(row.id));
    }
    let mut users = [User::from(row)];
    attach_relations(txn, &mut users).await?;
    let [user] = users;
    Ok(user)
}

/// Loads the devices and blocks of `users` into them: one query for each, whatever the number of
/// users. Devices oldest first, blocks oldest first.
pub(crate) async fn attach_relations(
    conn: &impl ConnectionTrait,
    users: &mut [User],
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = users.iter().map(|u| u.fields.id.clone()).collect();
    let devices = device::Entity::find()
        .filter(device::Column::UserId.is_in(ids.clone()))
        .order_by_asc(device::Column::CreatedAt)
        .order_by_asc(device::Column::Id)
        .all(conn)
        .await?;
    let blocks = user_block::Entity::find()
        .filter(user_block::Column::UserId.is_in(ids))
        .order_by_asc(user_block::Column::CreatedAt)
        .order_by_asc(user_block::Column::BlockedUserId)
        .all(conn)
        .await?;
    let mut devices_of: HashMap<String, Vec<_>> = HashMap::new();
    for row in devices {
        devices_of
            .entry(row.user_id.clone())
            .or_default()
            .push(row.into_device());
    }
    let mut blocks_of: HashMap<String, Vec<String>> = HashMap::new();
    for row in blocks {
        blocks_of
            .entry(row.user_id)
            .or_default()
            .push(row.blocked_user_id);
    }
    for user in users {
        user.devices = devices_of.remove(&user.fields.id).unwrap_or_default();
        user.blocked_user_ids = blocks_of.remove(&user.fields.id).unwrap_or_default();
    }
    Ok(())
}

fn active(model: user::Model) -> user::ActiveModel {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    model.into_active_model().reset_all()
}
