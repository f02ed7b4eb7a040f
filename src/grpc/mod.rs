//! Where requests enter: one tonic service per proto service. Handlers convert proto to domain,
//! call the store, and convert back; the rules live in `domain`, the SQL in `store`.
pub mod codec;
pub mod convert;
mod lifecycle;
mod roles;
pub mod status;
mod tasks;
mod users;

pub use roles::RoleApi;
pub use tasks::TaskApi;
pub use users::UserApi;

/// Most users one batch call takes.
pub const MAX_BATCH: usize = 100;
