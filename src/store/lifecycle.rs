//! The lifecycle writes on users, inside the caller's transaction: a request's immediate change
//! to the users it names (at enqueue), and a task item's effect on roster's own data (when the
//! item commits). What they write is decided by `domain::effects`; this is only the SQL.
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    sea_query::ExprTrait,
};
use serde_json::Value;

use super::entities::user::{self, Column as U};
use super::entities::{device, user_block};
use super::events::NewEvent;
use super::user_rows::{attach_owned, lock_user_rows};
use super::{Store, WriteTx};
use crate::domain::effects::{Immediate, ItemEffect, UserChange};
use crate::domain::task::{NewTask, TaskPayload};
use crate::domain::time::Micros;
use crate::domain::user::User;
use crate::error::Result;

impl Store {
    /// Locks the users `new` names and makes the request's immediate change to them, at the
    /// store's now once they are locked (which is returned). The users come back as the request
    /// leaves them, with their devices and blocks. Users that change alike (all of them, usually)
    /// are written by one statement.
    pub(super) async fn change_named_users(
        &self,
        tx: &mut WriteTx,
        new: &NewTask,
    ) -> Result<(Immediate, Micros)> {
        let mut rows = lock_user_rows(&tx.txn, new.user_ids.iter().cloned()).await?;
        let now = tx.now();
        let txn = &tx.txn;
        let TaskPayload::V1(options) = &new.payload;
        let mut owns = Vec::with_capacity(new.user_ids.len());
        let find = |id: &str| {
            rows.remove(id).map(|row| {
                owns.push(row.owns);
                User::from(row.model)
            })
        };
        let mut immediate = Immediate::of(new.kind, options, &new.user_ids, find, now)?;
        let mut alike: Vec<(&UserChange, Vec<String>)> = Vec::new();
        for (user, change) in immediate.users.iter().zip(&immediate.changes) {
            if change.is_empty() {
                continue;
            }
            let id = user.fields.id.clone();
            match alike.iter_mut().find(|(c, _)| *c == change) {
                Some((_, ids)) => ids.push(id),
                None => alike.push((change, vec![id])),
            }
        }
        for (change, ids) in alike {
            user::Entity::update_many()
                .set(change_row(change))
                .filter(U::Id.is_in(ids))
                .exec(txn)
                .await?;
        }
        attach_owned(txn, &mut immediate.users, &owns).await?;
        Ok((immediate, now))
    }
}

/// Makes a task item's effect on one user (see [`ItemEffect`]), when it still applies to the
/// user; gives the feed event it makes, if it changed anything. The user's row stays locked until
/// the item commits. `now` was read before the row was locked: the user's time never goes back
/// behind what a writer that committed meanwhile stamped.
pub(super) async fn apply_item_effect(
    txn: &DatabaseTransaction,
    effect: ItemEffect,
    user_id: &str,
    now: Micros,
) -> Result<Option<NewEvent>> {
    let Some(event) = effect.feed_event() else {
        return Ok(None);
    };
    let Some(row) = user::Entity::find_by_id(user_id.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let now = Ord::max(now, row.updated_at);
    let user = User::from(row);
    if !effect.applies_to(&user) {
        return Ok(None);
    }
    device::Entity::delete_many()
        .filter(device::Column::UserId.eq(user_id.to_owned()))
        .exec(txn)
        .await?;
    let mut blocks = user_block::Column::UserId.eq(user_id.to_owned());
    if effect.removes_blocks_naming_the_user() {
        blocks = blocks.or(user_block::Column::BlockedUserId.eq(user_id.to_owned()));
    }
    user_block::Entity::delete_many()
        .filter(blocks)
        .exec(txn)
        .await?;
    if effect.removes_the_user() {
        user::Entity::delete_by_id(user_id.to_owned())
            .exec(txn)
            .await?;
        return Ok(Some(NewEvent::gone(event, user_id)));
    }
    user::Entity::update_many()
        .set(change_row(&ItemEffect::pruning(now)))
        .filter(U::Id.eq(user_id.to_owned()))
        .exec(txn)
        .await?;
    Ok(Some(NewEvent::user(event, &ItemEffect::pruned(user, now))))
}

/// The columns a change sets, as an update of `users` (every other column unset).
fn change_row(change: &UserChange) -> user::ActiveModel {
    let UserChange {
        name,
        image,
        custom,
        teams,
        teams_role,
        deactivated_at,
        deleted_at,
        pruned_at,
        updated_at,
    } = change;
    let mut row = user::ActiveModel::default();
    if let Some(name) = name {
        row.name = Set(name.clone());
    }
    if let Some(image) = image {
        row.image = Set(image.clone());
    }
    if let Some(custom) = custom {
        row.custom = Set(Value::Object(custom.clone()));
    }
    if let Some(teams) = teams {
        row.teams = Set(Value::from(teams.clone()));
    }
    if let Some(teams_role) = teams_role {
        row.teams_role = Set(serde_json::to_value(teams_role).unwrap_or_default());
    }
    if let Some(at) = deactivated_at {
        row.deactivated_at = Set(*at);
    }
    if let Some(at) = deleted_at {
        row.deleted_at = Set(*at);
    }
    if let Some(at) = pruned_at {
        row.pruned_at = Set(*at);
    }
    if let Some(at) = updated_at {
        row.updated_at = Set(*at);
    }
    row
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveValue, IdenStatic, Iterable};

    use super::*;

    /// Every field of a change reaches its column, and an empty change sets none.
    #[test]
    fn a_change_sets_exactly_its_columns() {
        use sea_orm::ActiveModelTrait;
        let set = |row: &user::ActiveModel| -> Vec<String> {
            U::iter()
                .filter(|&c| !row.is_not_set(c))
                .map(|c| c.as_str().to_owned())
                .collect()
        };
        assert!(set(&change_row(&UserChange::default())).is_empty());
        let pruning = change_row(&ItemEffect::pruning(7));
        assert_eq!(
            set(&pruning),
            [
                "name",
                "image",
                "custom",
                "teams",
                "teams_role",
                "updated_at"
            ]
        );
        assert_eq!(pruning.custom, ActiveValue::Set(serde_json::json!({})));
        assert_eq!(pruning.teams, ActiveValue::Set(serde_json::json!([])));
        assert_eq!(pruning.teams_role, ActiveValue::Set(serde_json::json!({})));
        assert_eq!(pruning.name, ActiveValue::Set(None));
        let marks = change_row(&UserChange {
            deactivated_at: Some(None),
            deleted_at: Some(Some(3)),
            pruned_at: Some(Some(3)),
            ..UserChange::default()
        });
        assert_eq!(marks.deactivated_at, ActiveValue::Set(None));
        assert_eq!(marks.deleted_at, ActiveValue::Set(Some(3)));
        assert_eq!(marks.pruned_at, ActiveValue::Set(Some(3)));
        assert!(marks.updated_at.is_not_set());
    }
}
