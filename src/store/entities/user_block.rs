use sea_orm::entity::prelude::*;

use crate::domain::moderation::Block;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "user_blocks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub blocked_user_id: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for Block {
    fn from(m: Model) -> Self {
        Block {
            user_id: m.user_id,
            blocked_user_id: m.blocked_user_id,
            created_at: m.created_at,
        }
    }
}
