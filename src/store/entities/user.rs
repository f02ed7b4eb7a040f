use sea_orm::entity::prelude::*;
use serde_json::{Map, Value};

use crate::domain::moderation::Ban;
use crate::domain::user::{User, UserFields};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub role: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub custom: Json,
    pub language: String,
    pub invisible: bool,
    #[sea_orm(column_type = "JsonBinary")]
    pub teams: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub teams_role: Json,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub privacy_settings: Option<Json>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub push_notifications: Option<Json>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deactivated_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub last_active: Option<i64>,
    pub revoke_tokens_issued_before: Option<i64>,
    pub avg_response_time: Option<i32>,
    pub pruned_at: Option<i64>,
    // Change-feed snapshots are serialized rows; those written before bans existed lack these.
    #[serde(default)]
    pub banned_at: Option<i64>,
    #[serde(default)]
    pub ban_expires: Option<i64>,
    #[serde(default)]
    pub ban_reason: Option<String>,
    #[serde(default)]
    pub shadow_banned: bool,
    #[serde(default)]
    pub banned_by_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for User {
    fn from(m: Model) -> Self {
        // Rows are only ever written from validated domain values, so a document that does not
        // decode can only come from outside roster; it reads as the field's default.
        let custom = match m.custom {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        User {
            fields: UserFields {
                id: m.id,
                name: m.name,
                image: m.image,
                role: m.role,
                custom,
                language: m.language,
                invisible: m.invisible,
                teams: serde_json::from_value(m.teams).unwrap_or_default(),
                teams_role: serde_json::from_value(m.teams_role).unwrap_or_default(),
                privacy_settings: m
                    .privacy_settings
                    .and_then(|v| serde_json::from_value(v).ok()),
                push_notifications: m
                    .push_notifications
                    .and_then(|v| serde_json::from_value(v).ok()),
            },
            created_at: m.created_at,
            updated_at: m.updated_at,
            deactivated_at: m.deactivated_at,
            deleted_at: m.deleted_at,
            last_active: m.last_active,
            revoke_tokens_issued_before: m.revoke_tokens_issued_before,
            avg_response_time: m.avg_response_time,
            pruned_at: m.pruned_at,
            ban: m.banned_at.map(|banned_at| Ban {
                banned_at,
                expires: m.ban_expires,
                reason: m.ban_reason,
                shadow: m.shadow_banned,
                banned_by_id: m.banned_by_id,
            }),
            // Rows of their own: `store::user_rows::attach_relations` loads them.
            devices: Vec::new(),
            blocked_user_ids: Vec::new(),
        }
    }
}

impl From<&User> for Model {
    fn from(u: &User) -> Self {
        let f = &u.fields;
        Model {
            id: f.id.clone(),
            name: f.name.clone(),
            image: f.image.clone(),
            role: f.role.clone(),
            custom: Value::Object(f.custom.clone()),
            language: f.language.clone(),
            invisible: f.invisible,
            teams: Value::from(f.teams.clone()),
            teams_role: serde_json::to_value(&f.teams_role).unwrap_or_default(),
            privacy_settings: f
                .privacy_settings
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
            push_notifications: f
                .push_notifications
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
            created_at: u.created_at,
            updated_at: u.updated_at,
            deactivated_at: u.deactivated_at,
            deleted_at: u.deleted_at,
            last_active: u.last_active,
            revoke_tokens_issued_before: u.revoke_tokens_issued_before,
            avg_response_time: u.avg_response_time,
            pruned_at: u.pruned_at,
            banned_at: u.ban.as_ref().map(|b| b.banned_at),
            ban_expires: u.ban.as_ref().and_then(|b| b.expires),
            ban_reason: u.ban.as_ref().and_then(|b| b.reason.clone()),
            shadow_banned: u.ban.as_ref().is_some_and(|b| b.shadow),
            banned_by_id: u.ban.as_ref().and_then(|b| b.banned_by_id.clone()),
        }
    }
}
