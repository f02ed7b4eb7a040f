//! What lifecycle requests do to users, as rules over domain values: the change a request makes
//! at once when it is enqueued (deactivated, deleted, ... and who is affected), and the effect
//! each of its task items has on roster's own data when the item commits (pruning, hard
//! deletion). The store reads and writes what these functions say; it decides nothing itself.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::event::EventKind;
use super::lifecycle::UserDeletion;
use super::task::{LifecycleV1, TaskKind, TaskPayload};
use super::time::Micros;
use super::user::User;
use crate::error::{Error, Result};

/// What a lifecycle rule changes on a user's row; `None` leaves a field as it is. Two users that
/// change alike have equal changes (the store writes them with one statement).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserChange {
    pub name: Option<Option<String>>,
    pub image: Option<Option<String>>,
    pub custom: Option<Map<String, Value>>,
    pub teams: Option<Vec<String>>,
    pub teams_role: Option<BTreeMap<String, String>>,
    pub deactivated_at: Option<Option<Micros>>,
    pub deleted_at: Option<Option<Micros>>,
    pub pruned_at: Option<Option<Micros>>,
    pub updated_at: Option<Micros>,
}

impl UserChange {
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == UserChange::default()
    }

    /// `user` with the change made.
    pub fn apply(&self, user: &mut User) {
        let f = &mut user.fields;
        if let Some(name) = &self.name {
            f.name.clone_from(name);
        }
        if let Some(image) = &self.image {
            f.image.clone_from(image);
        }
        if let Some(custom) = &self.custom {
            f.custom.clone_from(custom);
        }
        if let Some(teams) = &self.teams {
            f.teams.clone_from(teams);
        }
        if let Some(teams_role) = &self.teams_role {
            f.teams_role.clone_from(teams_role);
        }
        if let Some(at) = self.deactivated_at {
            user.deactivated_at = at;
        }
        if let Some(at) = self.deleted_at {
            user.deleted_at = at;
        }
        if let Some(at) = self.pruned_at {
            user.pruned_at = at;
        }
        if let Some(at) = self.updated_at {
            user.updated_at = at;
        }
    }
}

/// The change a lifecycle request of `kind` makes at once to `user`, as it is now: empty when the
/// user is already as the request wants it (deactivating a deactivated user). Deactivating or
/// reactivating a deleted user, restoring one that is not deleted, and restoring one that was
/// pruned or hard-deleted are refused.
pub fn immediate_change(
    kind: TaskKind,
    options: &LifecycleV1,
    user: &User,
    now: Micros,
) -> Result<UserChange> {
    let id = || user.fields.id.clone();
    let mut change = UserChange::default();
    match kind {
        TaskKind::DeactivateUsers | TaskKind::ReactivateUsers if user.deleted_at.is_some() => {
            return Err(Error::UserDeleted(id()));
        }
        TaskKind::DeactivateUsers => {
            if user.deactivated_at.is_none() {
                change.deactivated_at = Some(Some(now));
            }
        }
        TaskKind::ReactivateUsers => {
            if user.deactivated_at.is_some() {
                change.deactivated_at = Some(None);
            }
            // A new name may come with the reactivation.
            if let Some(name) = options
                .name
                .as_ref()
                .filter(|n| user.fields.name.as_deref() != Some(n.as_str()))
            {
                change.name = Some(Some(name.clone()));
            }
        }
        TaskKind::DeleteUsers => {
            if user.deleted_at.is_none() {
                change.deleted_at = Some(Some(now));
            }
            if deletion(options) != UserDeletion::Soft && user.pruned_at.is_none() {
                // Pruned and hard-deleted users can never be restored, from this moment on.
                change.pruned_at = Some(Some(now));
            }
        }
        TaskKind::RestoreUsers => {
            if user.deleted_at.is_none() {
                return Err(Error::UserNotDeleted(id()));
            }
            if user.pruned_at.is_some() {
                return Err(Error::UserPruned(id()));
            }
            change.deleted_at = Some(None);
        }
    }
    if !change.is_empty() {
        change.updated_at = Some(now);
    }
    Ok(change)
}

/// What a lifecycle request does at once to the users it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Immediate {
    pub kind: TaskKind,
    /// The users as the request leaves them, in the order it names them.
    pub users: Vec<User>,
    /// `changes[i]` is what the request changed on `users[i]` (empty: nothing).
    pub changes: Vec<UserChange>,
}

impl Immediate {
    /// Applies `immediate_change` to each user the request names, in its order, as `find` gives
    /// them; the first user that does not exist or refuses the change refuses the whole request.
    pub fn of(
        kind: TaskKind,
        options: &LifecycleV1,
        ids: &[String],
        mut find: impl FnMut(&str) -> Option<User>,
        now: Micros,
    ) -> Result<Self> {
        let mut users = Vec::with_capacity(ids.len());
        let mut changes = Vec::with_capacity(ids.len());
        for id in ids {
            let mut user = find(id).ok_or_else(|| Error::UserNotFound(id.clone()))?;
            let change = immediate_change(kind, options, &user, now)?;
            change.apply(&mut user);
            users.push(user);
            changes.push(change);
        }
        Ok(Immediate {
            kind,
            users,
            changes,
        })
    }

    /// Whether the request enqueues a task: always, unless it is a deactivation or reactivation
    /// that changed no user (see [`TaskKind::no_task_without_change`]).
    pub fn enqueues_task(&self) -> bool {
        !self.kind.no_task_without_change() || self.changes.iter().any(|c| !c.is_empty())
    }

    /// The change feed's record of the request: one event per user it changed.
    pub fn events(&self) -> impl Iterator<Item = (EventKind, &User)> {
        let kind = self.kind.feed_event();
        self.users
            .iter()
            .zip(&self.changes)
            .filter(|(_, change)| !change.is_empty())
            .map(move |(user, _)| (kind, user))
    }
}

/// How much of a deleted user a request asked to keep (soft deletion when it did not say).
fn deletion(options: &LifecycleV1) -> UserDeletion {
    options.delete.as_ref().map(|d| d.user).unwrap_or_default()
}

/// What committing a task item does to roster's own data. The state change itself was made at
/// enqueue; this is the rest, which waits until the products were told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemEffect {
    /// Deactivation, reactivation, restoration, soft deletion: nothing more.
    Nothing,
    /// Name, image, custom data, teams, devices and the blocks the user made go; the row stays,
    /// deleted and pruned. Blocks of other users that name it stay: a pruned id is never reused,
    /// and those users chose to block it.
    Prune,
    /// Everything roster holds about the user goes, the blocks that name it included: the id is
    /// free again, and a new user with it must not inherit them.
    HardDelete,
}

impl ItemEffect {
    /// The effect of each item of a task of `kind` with `payload`.
    pub fn of(kind: TaskKind, payload: &TaskPayload) -> ItemEffect {
        let TaskPayload::V1(options) = payload;
        match (kind, deletion(options)) {
            (TaskKind::DeleteUsers, UserDeletion::Pruning) => ItemEffect::Prune,
            (TaskKind::DeleteUsers, UserDeletion::Hard) => ItemEffect::HardDelete,
            _ => ItemEffect::Nothing,
        }
    }

    /// Whether the effect applies to `user` as it is when the item commits. Only the user the
    /// request marked is pruned or removed: the request set `pruned_at` at enqueue, and nothing
    /// clears it. A user without it was created with the id after an earlier hard delete freed
    /// it (soft-deleted since, perhaps), which a second, stale hard delete of the old user must
    /// leave alone.
    pub fn applies_to(self, user: &User) -> bool {
        self != ItemEffect::Nothing && user.deleted_at.is_some() && user.pruned_at.is_some()
    }

    /// Whether the blocks other users made of the user go too (not only the user's own).
    pub fn removes_blocks_naming_the_user(self) -> bool {
        self == ItemEffect::HardDelete
    }

    /// Whether the user's row itself goes.
    pub fn removes_the_user(self) -> bool {
        self == ItemEffect::HardDelete
    }

    /// What pruning changes on the row at `now` (devices and blocks go as rows of their own).
    pub fn pruning(now: Micros) -> UserChange {
        UserChange {
            name: Some(None),
            image: Some(None),
            custom: Some(Map::new()),
            teams: Some(Vec::new()),
            teams_role: Some(BTreeMap::new()),
            updated_at: Some(now),
            ..UserChange::default()
        }
    }

    /// `user` after a pruning at `now`: the row changed, no devices and no blocks of its own.
    pub fn pruned(mut user: User, now: Micros) -> User {
        ItemEffect::pruning(now).apply(&mut user);
        user.devices.clear();
        user.blocked_user_ids.clear();
        user
    }

    /// What the change feed records when the effect applies.
    pub fn feed_event(self) -> Option<EventKind> {
        match self {
            ItemEffect::Nothing => None,
            ItemEffect::Prune => Some(EventKind::UserPruned),
            ItemEffect::HardDelete => Some(EventKind::UserHardDeleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::lifecycle::DeleteOptions;
    use crate::domain::user::UserFields;

    const NOW: Micros = 1_000;

    fn user(id: &str) -> User {
        let mut fields = UserFields::with_id(id);
        fields.name = Some("Ann".into());
        fields.image = Some("ann.png".into());
        fields.custom = json!({"color": "blue"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        fields.teams = vec!["red".into()];
        fields.teams_role.insert("red".into(), "admin".into());
        User::new(fields, 10)
    }

    fn deleted(id: &str, pruned: bool) -> User {
        let mut u = user(id);
        u.deleted_at = Some(20);
        u.pruned_at = pruned.then_some(20);
        u
    }

    fn delete(mode: UserDeletion) -> LifecycleV1 {
        LifecycleV1 {
            delete: Some(DeleteOptions {
                user: mode,
                ..DeleteOptions::default()
            }),
            ..LifecycleV1::default()
        }
    }

    fn change(kind: TaskKind, options: &LifecycleV1, user: &User) -> Result<UserChange> {
        immediate_change(kind, options, user, NOW)
    }

    #[test]
    fn deactivation_marks_active_users_and_leaves_deactivated_ones() {
        let none = LifecycleV1::default();
        let c = change(TaskKind::DeactivateUsers, &none, &user("u1")).unwrap();
        assert_eq!(
            c,
            UserChange {
                deactivated_at: Some(Some(NOW)),
                updated_at: Some(NOW),
                ..UserChange::default()
            }
        );
        let mut off = user("u1");
        off.deactivated_at = Some(5);
        assert!(
            change(TaskKind::DeactivateUsers, &none, &off)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            change(TaskKind::DeactivateUsers, &none, &deleted("u1", false)),
            Err(Error::UserDeleted(id)) if id == "u1"
        ));
    }

    #[test]
    fn reactivation_clears_deactivation_and_may_rename() {
        let mut off = user("u1");
        off.deactivated_at = Some(5);
        let rename = LifecycleV1 {
            name: Some("Bea".into()),
            ..LifecycleV1::default()
        };
        let c = change(TaskKind::ReactivateUsers, &rename, &off).unwrap();
        assert_eq!(c.deactivated_at, Some(None));
        assert_eq!(c.name, Some(Some("Bea".into())));
        assert_eq!(c.updated_at, Some(NOW));
        // Active already, same name: nothing to do.
        let same = LifecycleV1 {
            name: Some("Ann".into()),
            ..LifecycleV1::default()
        };
        assert!(
            change(TaskKind::ReactivateUsers, &same, &user("u1"))
                .unwrap()
                .is_empty()
        );
        // Active already, a new name: the rename alone.
        let c = change(TaskKind::ReactivateUsers, &rename, &user("u1")).unwrap();
        assert_eq!(c.deactivated_at, None);
        assert_eq!(c.name, Some(Some("Bea".into())));
        assert!(change(TaskKind::ReactivateUsers, &rename, &deleted("u1", false)).is_err());
    }

    #[test]
    fn deletion_marks_deleted_and_pruned_unless_soft() {
        let soft = change(
            TaskKind::DeleteUsers,
            &delete(UserDeletion::Soft),
            &user("u1"),
        );
        assert_eq!(
            soft.unwrap(),
            UserChange {
                deleted_at: Some(Some(NOW)),
                updated_at: Some(NOW),
                ..UserChange::default()
            }
        );
        for mode in [UserDeletion::Pruning, UserDeletion::Hard] {
            let c = change(TaskKind::DeleteUsers, &delete(mode), &user("u1")).unwrap();
            assert_eq!(
                (c.deleted_at, c.pruned_at),
                (Some(Some(NOW)), Some(Some(NOW)))
            );
            // A soft-deleted user deleted again, harder: only the pruning mark is new.
            let c = change(TaskKind::DeleteUsers, &delete(mode), &deleted("u1", false)).unwrap();
            assert_eq!((c.deleted_at, c.pruned_at), (None, Some(Some(NOW))));
        }
        // Deleted already, soft: nothing changes (the task still runs for the products).
        let again = change(
            TaskKind::DeleteUsers,
            &delete(UserDeletion::Soft),
            &deleted("u1", false),
        );
        assert!(again.unwrap().is_empty());
        let options = LifecycleV1::default();
        assert!(
            change(TaskKind::DeleteUsers, &options, &deleted("u1", true))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn restoration_needs_a_deleted_unpruned_user() {
        let none = LifecycleV1::default();
        let c = change(TaskKind::RestoreUsers, &none, &deleted("u1", false)).unwrap();
        assert_eq!(c.deleted_at, Some(None));
        assert!(matches!(
            change(TaskKind::RestoreUsers, &none, &user("u1")),
            Err(Error::UserNotDeleted(_))
        ));
        assert!(matches!(
            change(TaskKind::RestoreUsers, &none, &deleted("u1", true)),
            Err(Error::UserPruned(_))
        ));
    }

    /// `Immediate::of` over these users, named in this order.
    fn immediate(kind: TaskKind, users: &[User]) -> Result<Immediate> {
        let ids: Vec<String> = users.iter().map(|u| u.fields.id.clone()).collect();
        let find = |id: &str| users.iter().find(|u| u.fields.id == id).cloned();
        Immediate::of(kind, &LifecycleV1::default(), &ids, find, NOW)
    }

    #[test]
    fn a_request_enqueues_a_task_unless_it_changes_nothing_that_needs_one() {
        let mut off = user("u2");
        off.deactivated_at = Some(5);
        let im = immediate(TaskKind::DeactivateUsers, &[user("u1"), off.clone()]).unwrap();
        assert!(im.enqueues_task());
        assert_eq!(im.users[0].deactivated_at, Some(NOW));
        assert_eq!(im.users[0].updated_at, NOW);
        assert_eq!(im.users[1], off, "unchanged users stay as they were");
        let events: Vec<(EventKind, &str)> = im
            .events()
            .map(|(k, u)| (k, u.fields.id.as_str()))
            .collect();
        assert_eq!(events, [(EventKind::UserDeactivated, "u1")]);

        let im = immediate(TaskKind::DeactivateUsers, std::slice::from_ref(&off)).unwrap();
        assert!(!im.enqueues_task());
        assert_eq!(im.events().count(), 0);

        // A delete of users deleted already still has product work to do.
        let im = immediate(TaskKind::DeleteUsers, &[deleted("u3", false)]).unwrap();
        assert!(im.enqueues_task());
        assert_eq!(im.events().count(), 0);
    }

    #[test]
    fn the_first_user_in_the_requests_order_that_refuses_refuses_it() {
        // u1 cannot be restored (not deleted); u2 does not exist: u1 comes first.
        let ids = ["u1".to_owned(), "u2".to_owned()];
        let find = |id: &str| (id == "u1").then(|| user("u1"));
        let none = LifecycleV1::default();
        let refused = Immediate::of(TaskKind::RestoreUsers, &none, &ids, find, NOW);
        assert!(matches!(refused, Err(Error::UserNotDeleted(id)) if id == "u1"));
        let refused = Immediate::of(TaskKind::DeleteUsers, &none, &ids, find, NOW);
        assert!(matches!(refused, Err(Error::UserNotFound(id)) if id == "u2"));
    }

    #[test]
    fn only_pruning_and_hard_deletes_have_item_effects() {
        let payload = |options: LifecycleV1| TaskPayload::V1(options);
        for kind in [
            TaskKind::DeactivateUsers,
            TaskKind::ReactivateUsers,
            TaskKind::RestoreUsers,
        ] {
            let effect = ItemEffect::of(kind, &payload(delete(UserDeletion::Hard)));
            assert_eq!(effect, ItemEffect::Nothing, "{kind:?}");
        }
        let of = |mode| ItemEffect::of(TaskKind::DeleteUsers, &payload(delete(mode)));
        assert_eq!(of(UserDeletion::Soft), ItemEffect::Nothing);
        assert_eq!(of(UserDeletion::Pruning), ItemEffect::Prune);
        assert_eq!(of(UserDeletion::Hard), ItemEffect::HardDelete);
        assert_eq!(
            ItemEffect::of(TaskKind::DeleteUsers, &payload(LifecycleV1::default())),
            ItemEffect::Nothing
        );

        assert!(!ItemEffect::Prune.removes_blocks_naming_the_user());
        assert!(!ItemEffect::Prune.removes_the_user());
        assert!(ItemEffect::HardDelete.removes_blocks_naming_the_user());
        assert!(ItemEffect::HardDelete.removes_the_user());
        assert_eq!(ItemEffect::Nothing.feed_event(), None);
        assert_eq!(ItemEffect::Prune.feed_event(), Some(EventKind::UserPruned));
        assert_eq!(
            ItemEffect::HardDelete.feed_event(),
            Some(EventKind::UserHardDeleted)
        );
    }

    #[test]
    fn item_effects_apply_only_to_the_user_the_request_marked() {
        for effect in [ItemEffect::Prune, ItemEffect::HardDelete] {
            assert!(effect.applies_to(&deleted("u1", true)));
            // Soft-deleted since a hard delete freed the id: a new user, left alone.
            assert!(!effect.applies_to(&deleted("u1", false)));
            assert!(!effect.applies_to(&user("u1")));
        }
        assert!(!ItemEffect::Nothing.applies_to(&deleted("u1", true)));
    }

    #[test]
    fn pruning_clears_what_the_caller_set_and_keeps_the_marks() {
        let mut before = deleted("u1", true);
        before.blocked_user_ids = vec!["u9".into()];
        let after = ItemEffect::pruned(before.clone(), NOW);
        assert_eq!(after.fields.name, None);
        assert_eq!(after.fields.image, None);
        assert!(after.fields.custom.is_empty());
        assert!(after.fields.teams.is_empty());
        assert!(after.fields.teams_role.is_empty());
        assert!(after.blocked_user_ids.is_empty());
        assert_eq!(after.updated_at, NOW);
        assert_eq!((after.deleted_at, after.pruned_at), (Some(20), Some(20)));
        assert_eq!(after.fields.role, before.fields.role);
        assert_eq!(after.created_at, before.created_at);
    }
}
