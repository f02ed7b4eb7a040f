//! roster: the user-management service every product of a platform shares.
//!
//! Where things live:
//! - `grpc/`: where requests enter (tonic services, proto <-> domain conversion, status mapping);
//! - `domain/`: the rules (validation, partial-update merging, the filter language);
//! - `store/`: the SQL (SeaORM entities and every query);
//! - `server`: wiring (health, reflection, shutdown); `config`: flags and environment.

pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;

/// The product contract (`roster.product.v1`): roster is its client.
pub mod product_pb {
    tonic::include_proto!("roster.product.v1");
}

pub mod pb {
    tonic::include_proto!("roster.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("roster_descriptor");
}

pub use config::Config;
pub use server::run;
