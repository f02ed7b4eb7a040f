//! SeaORM entities: the tables as rows. Conversions to and from domain types live beside them.
pub mod device;
pub mod event_horizon;
pub mod role;
pub mod task;
pub mod task_item;
pub mod user;
pub mod user_block;
pub mod user_event;
