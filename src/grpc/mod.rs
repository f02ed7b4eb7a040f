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
