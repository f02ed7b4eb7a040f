pub mod filter;
pub mod lifecycle;
pub mod partial;
pub mod query;
pub mod role;
pub mod task;
pub mod time;
pub mod user;
