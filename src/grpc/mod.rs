//! Where requests enter: one tonic service per proto service. Handlers convert proto to domain,
//! call the store, and convert back; the rules live in `domain`, the SQL in `store`.
pub mod codec;
pub mod convert;
mod devices;
mod events;
pub mod gate;
mod lifecycle;
mod moderation;
pub mod product_client;
mod roles;
pub mod status;
mod tasks;
mod tokens;
mod users;

pub use devices::DeviceApi;
pub use events::EventApi;
pub use moderation::ModerationApi;
pub use roles::RoleApi;
pub use tasks::TaskApi;
pub use tokens::TokenApi;
pub use users::UserApi;

/// The authenticated calling service, put into request extensions by authentication.
#[derive(Debug, Clone)]
pub struct CallerIdentity(pub String);

/// The caller's identity, if the request was authenticated.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<CallerIdentity>()
        .map(|c| c.0.clone())
}

/// Most users one batch call takes.
pub const MAX_BATCH: usize = 100;
