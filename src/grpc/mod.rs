//! The gRPC door: one tonic service per proto service. Handlers convert proto to domain inputs,
//! call the application layer (`app`), and convert its answers back; no rule is decided here.
/// The product contract (`roster.product.v1`): roster is its client.
pub mod product_pb {
    tonic::include_proto!("roster.product.v1");
}

/// roster's own API (`roster.v1`), generated from `proto/`.
pub mod pb {
    tonic::include_proto!("roster.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("roster_descriptor");
}

use crate::domain::access::Caller;

pub mod codec;
pub mod convert;
mod devices;
mod events;
pub mod gate;
pub mod healthcheck;
mod moderation;
pub mod otlp;
pub mod product_client;
mod roles;
pub mod server;
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

/// The caller of `request`, as the gate authenticated it (everything is allowed when
/// authentication is off).
pub fn caller<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::unauthenticated)
}
