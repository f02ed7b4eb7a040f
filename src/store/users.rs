//! User writes: upsert (create or replace) and partial update. Reads live in `user_reads`.
use std::collections::HashMap;

use sea_orm::ConnectionTrait;

use super::Store;
use super::entities::user::{self, Column};
use super::events::{self, NewEvent};
use super::replace;
use super::sql_text::SqlText;
use super::user_rows::{Owns, REPLACED_COLUMNS, UserRow, attach_owned, lock_user_rows};
use crate::domain::event::{Actor, EventKind};
use crate::domain::partial::{AppliedBatch, PartialUpdate, check_distinct_ids};
use crate::domain::user::{User, UserFields, dotted_key_violation_in};
use crate::error::{Error, FieldViolation, Result};

impl Store {
    /// Creates or replaces users, all or nothing. Caller fields are replaced; server fields kept.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(count = batch.len()))]
    pub async fn upsert_users(&self, batch: Vec<UserFields>, actor: &Actor) -> Result<Vec<User>> {
        let mut violations: Vec<FieldViolation> = batch
            .iter()
            .flat_map(|f| {
                let at = format!("users[{}]", f.id);
                let dotted = dotted_key_violation_in(&f.custom, &format!("{at}.custom"));
                f.violations(&at).into_iter().chain(dotted)
            })
            .collect();
        let mut tx = self.write().await?;
        let scopes = self
            .role_scopes(&tx.txn, batch.iter().flat_map(UserFields::role_names))
            .await?;
        violations.extend(batch.iter().flat_map(|f| {
            f.role_violations(&format!("users[{}]", f.id), |r| scopes.get(r).copied())
        }));
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        // Rows are written, and on PostgreSQL locked, in id order, so that concurrent batches
        // cannot deadlock.
        let mut batch = batch;
        batch.sort_by(|a, b| a.id.cmp(&b.id));
        // On PostgreSQL the statement locks the rows after this: it keeps the later of this and
        // the stored time (see `replace`).
        let now = tx.now();
        let (mut users, kinds, owns) = match self.backend() {
            sea_orm::DatabaseBackend::Postgres => {
                // One statement writes and says what it did; see `replace`.
                let mut users: Vec<User> = batch.into_iter().map(|f| User::new(f, now)).collect();
                let mut done = replace::write(&tx.txn, &users).await?;
                let mut kinds = Vec::with_capacity(users.len());
                let mut owns = Vec::with_capacity(users.len());
                for user in &mut users {
                    let Some(replaced) = done.remove(&user.fields.id) else {
                        return Err(Error::UserDeleted(user.fields.id.clone()));
                    };
                    kinds.push(match replaced.created {
                        true => EventKind::UserCreated,
                        false => EventKind::UserUpdated,
                    });
                    replaced.server.apply(user);
                    owns.push(replaced.owns);
                }
                (users, kinds, owns)
            }
            _ => {
                let mut existing =
                    lock_user_rows(&tx.txn, batch.iter().map(|f| f.id.clone())).await?;
                if let Some(deleted) = existing.values().find(|r| r.model.deleted_at.is_some()) {
                    return Err(Error::UserDeleted(deleted.model.id.clone()));
                }
                let mut kinds = Vec::with_capacity(batch.len());
                let mut owns = Vec::with_capacity(batch.len());
                let users: Vec<User> = batch
                    .into_iter()
                    .map(|fields| match existing.remove(&fields.id) {
                        Some(row) => {
                            kinds.push(EventKind::UserUpdated);
                            owns.push(row.owns);
                            User {
                                fields,
                                updated_at: now,
                                ..User::from(row.model)
                            }
                        }
                        None => {
                            kinds.push(EventKind::UserCreated);
                            owns.push(Owns::NOTHING);
                            User::new(fields, now)
                        }
                    })
                    .collect();
                replace::write(&tx.txn, &users).await?;
                (users, kinds, owns)
            }
        };
        attach_owned(&tx.txn, &mut users, &owns).await?;
        let events = kinds
            .into_iter()
            .zip(&users)
            .map(|(kind, user)| NewEvent::user(kind, user))
            .collect();
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// Applies partial updates, all or nothing (see `AppliedBatch`); each user is locked while it
    /// is read, merged and written, so concurrent updates of different keys all survive.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"), fields(count = updates.len()))]
    pub async fn update_users_partial(
        &self,
        updates: Vec<PartialUpdate>,
        actor: &Actor,
    ) -> Result<Vec<User>> {
        check_distinct_ids(&updates)?;
        let mut tx = self.write().await?;
        let mut rows = lock_user_rows(&tx.txn, updates.iter().map(|u| u.id.clone())).await?;
        let now = tx.now();
        // The rows as they were, to write back only what changed, and what each user owns.
        let mut before = Vec::with_capacity(updates.len());
        let mut owned = Vec::with_capacity(updates.len());
        let find = |id: &str| {
            rows.remove(id).map(|UserRow { model, owns }| {
                before.push(model.clone());
                owned.push(owns);
                User::from(model)
            })
        };
        let mut applied = AppliedBatch::of(&updates, find, now)?;
        // Only a change of roles needs the roles looked up.
        let scopes = if applied.roles_changed {
            let names = applied.users.iter().flat_map(|u| u.fields.role_names());
            self.role_scopes(&tx.txn, names).await?
        } else {
            HashMap::new()
        };
        applied.check_roles(|r| scopes.get(r).copied())?;
        // Every row exists and is locked.
        let mut written = REPLACED_COLUMNS.to_vec();
        written.push(Column::RevokeTokensIssuedBefore);
        update_changed(&tx.txn, &before, &mut applied.users, &owned, &written).await?;
        let events = applied
            .events()
            .map(|(kind, user)| NewEvent::user(kind, user))
            .collect();
        events::append(&tx.txn, actor, now, events).await?;
        tx.commit().await?;
        Ok(applied.users)
    }
}

/// Writes back users whose rows exist and are locked (`before[i]` is `users[i]`'s row as read):
/// one `UPDATE ... FROM (VALUES ...)` for the batch, setting only those of `columns` that changed
/// for some user of it. A partial update usually changes one document and `updated_at`; the
/// others stay unsent, unencoded and unparsed.
async fn update_changed(
    txn: &impl ConnectionTrait,
    before: &[user::Model],
    users: &mut [User],
    owns: &[Owns],
    columns: &[Column],
) -> Result<()> {
    use sea_orm::ModelTrait;
    let after: Vec<user::Model> = users.iter().map(user::Model::from).collect();
    let changed: Vec<Column> = columns
        .iter()
        .copied()
        .filter(|&c| before.iter().zip(&after).any(|(b, a)| b.get(c) != a.get(c)))
        .collect();
    if !changed.is_empty() {
        txn.execute_raw(update_sql(txn.get_database_backend(), &after, &changed))
            .await?;
    }
    attach_owned(txn, users, owns).await
}

/// `UPDATE users SET c = v.column2, ... FROM (VALUES (id, c, ...), ...) AS v WHERE users.id =
/// v.column1`: the same text on both databases (VALUES names its columns `column1`, `column2`,
/// ... on each), with PostgreSQL's parameters typed by a cast, which VALUES needs there.
fn update_sql(
    backend: sea_orm::DatabaseBackend,
    rows: &[user::Model],
    columns: &[Column],
) -> sea_orm::Statement {
    use sea_orm::{IdenStatic, ModelTrait, Value};
    let set: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\"{}\" = v.column{}", c.as_str(), i + 2))
        .collect();
    let mut sql = SqlText::with_capacity(backend, 256, rows.len() * (columns.len() + 1));
    sql.push(&format!(
        "UPDATE users SET {} FROM (VALUES ",
        set.join(", ")
    ));
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            sql.push(", ");
        }
        let id = (Value::from(row.id.clone()), "::text");
        let changed = columns.iter().map(|&c| {
            let value = row.get(c);
            let cast = match value {
                Value::Json(_) => "::jsonb",
                Value::BigInt(_) => "::int8",
                Value::Int(_) => "::int4",
                Value::Bool(_) => "::bool",
                Value::Double(_) => "::float8",
                Value::String(_) => "::text",
                _ => "",
            };
            (value, cast)
        });
        sql.row(std::iter::once(id).chain(changed));
    }
    sql.push(") AS v WHERE users.id = v.column1");
    sql.into_statement()
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;

    use super::*;

    /// A partial update's write names only the changed columns, each typed for PostgreSQL, and
    /// one VALUES row per user.
    #[test]
    fn updates_set_only_the_columns_given() {
        let rows: Vec<user::Model> = ["a", "b"]
            .iter()
            .map(|id| user::Model::from(&User::new(UserFields::with_id(*id), 7)))
            .collect();
        let columns = [Column::Custom, Column::UpdatedAt];
        let pg = update_sql(DatabaseBackend::Postgres, &rows, &columns);
        assert_eq!(
            pg.sql,
            "UPDATE users SET \"custom\" = v.column2, \"updated_at\" = v.column3 FROM (VALUES \
             ($1::text, $2::jsonb, $3::int8), ($4::text, $5::jsonb, $6::int8)) AS v \
             WHERE users.id = v.column1"
        );
        assert_eq!(pg.values.map_or(0, |v| v.0.len()), 6);
        let sqlite = update_sql(DatabaseBackend::Sqlite, &rows, &columns);
        assert!(
            sqlite
                .sql
                .contains("FROM (VALUES (?, ?, ?), (?, ?, ?)) AS v"),
            "{}",
            sqlite.sql
        );
    }
}
