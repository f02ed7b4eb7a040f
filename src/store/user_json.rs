//! A user as the JSON of its `users` row, written straight from the user: no `Model` (and none of
//! the JSON documents it would copy) is made on the way. Two writers use it:
//! - UpdateUsers' batch on PostgreSQL (`replace`), which `jsonb_populate_recordset` matches to
//!   the columns by name;
//! - the row part of a change-feed snapshot (`events`), read back as a `user::Model`.
use crate::domain::user::User;

/// One user as its row of `users`, in JSON: the keys are the columns, the JSON documents nested
/// as they are, every value borrowed from the user.
#[derive(serde::Serialize)]
pub(crate) struct RowJson<'a> {
    id: &'a str,
    name: Option<&'a str>,
    image: Option<&'a str>,
    role: &'a str,
    custom: &'a serde_json::Map<String, serde_json::Value>,
    language: &'a str,
    invisible: bool,
    teams: &'a [String],
    teams_role: &'a std::collections::BTreeMap<String, String>,
    privacy_settings: Option<&'a crate::domain::user::PrivacySettings>,
    push_notifications: Option<&'a crate::domain::user::PushNotifications>,
    created_at: i64,
    updated_at: i64,
    deactivated_at: Option<i64>,
    deleted_at: Option<i64>,
    last_active: Option<i64>,
    revoke_tokens_issued_before: Option<i64>,
    avg_response_time: Option<i32>,
    pruned_at: Option<i64>,
    banned_at: Option<i64>,
    ban_expires: Option<i64>,
    ban_reason: Option<&'a str>,
    shadow_banned: bool,
    banned_by_id: Option<&'a str>,
}

impl<'a> RowJson<'a> {
    pub fn of(user: &'a User) -> Self {
        let f = &user.fields;
        let ban = user.ban.as_ref();
        RowJson {
            id: &f.id,
            name: f.name.as_deref(),
            image: f.image.as_deref(),
            role: &f.role,
            custom: &f.custom,
            language: &f.language,
            invisible: f.invisible,
            teams: &f.teams,
            teams_role: &f.teams_role,
            privacy_settings: f.privacy_settings.as_ref(),
            push_notifications: f.push_notifications.as_ref(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            deactivated_at: user.deactivated_at,
            deleted_at: user.deleted_at,
            last_active: user.last_active,
            revoke_tokens_issued_before: user.revoke_tokens_issued_before,
            avg_response_time: user.avg_response_time,
            pruned_at: user.pruned_at,
            banned_at: ban.map(|b| b.banned_at),
            ban_expires: ban.and_then(|b| b.expires),
            ban_reason: ban.and_then(|b| b.reason.as_deref()),
            shadow_banned: ban.is_some_and(|b| b.shadow),
            banned_by_id: ban.and_then(|b| b.banned_by_id.as_deref()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::moderation::Ban;
    use crate::domain::user::{PrivacySetting, PrivacySettings, PushNotifications, UserFields};
    use crate::store::entities::user;

    /// A user with every field of its row set.
    pub(crate) fn full_user() -> User {
        let mut fields = UserFields::with_id("u1");
        fields.name = Some("Ada".into());
        fields.image = Some("https://img/ada.png".into());
        fields.role = "admin".into();
        fields.custom = json!({"city": "Oslo", "n": [1, 2.5, {"deep": true}]})
            .as_object()
            .cloned()
            .unwrap();
        fields.language = "nb".into();
        fields.invisible = true;
        fields.teams = vec!["red".into(), "blue".into()];
        fields.teams_role.insert("red".into(), "lead".into());
        fields.privacy_settings = Some(PrivacySettings {
            typing_indicators: Some(PrivacySetting { enabled: false }),
            read_receipts: Some(PrivacySetting { enabled: true }),
            delivery_receipts: None,
        });
        fields.push_notifications = Some(PushNotifications {
            disabled: true,
            disabled_until: Some(17),
        });
        let mut user = User::new(fields, 7);
        user.updated_at = 9;
        user.deactivated_at = Some(10);
        user.last_active = Some(11);
        user.revoke_tokens_issued_before = Some(12);
        user.avg_response_time = Some(13);
        user.pruned_at = Some(14);
        user.ban = Some(Ban {
            banned_at: 15,
            expires: Some(16),
            reason: Some("spam".into()),
            shadow: true,
            banned_by_id: Some("mod".into()),
        });
        user
    }

    #[test]
    fn a_row_in_json_reads_back_as_the_model_of_the_user() {
        let user = full_user();
        let text = serde_json::to_string(&RowJson::of(&user)).unwrap();
        let read: user::Model = serde_json::from_str(&text).unwrap();
        assert_eq!(read, user::Model::from(&user));
    }
}
