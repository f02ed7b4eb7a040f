pub mod filter;
pub mod partial;
pub mod query;
pub mod role;
pub mod time;
pub mod user;
