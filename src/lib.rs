//! roster: the user-management service every product of a platform shares.
//!
//! Where things live (requests flow down this list, never up):
//! - `grpc/`: the gRPC door, where requests enter: proto <-> domain conversion, status mapping,
//!   the gate (authentication, load shedding, metrics), the ports;
//! - `http/`: the Stream-compatible HTTP door (JSON shapes of Stream's user API, its errors and
//!   authentication), over the same `app` as gRPC;
//! - `app/`: the application layer, one method per use case, called by every door;
//! - `domain/`: the rules (validation, partial-update merging, lifecycle effects, the filter
//!   language, paging);
//! - `store/`: the SQL (SeaORM entities and every query);
//! - `tasks/` and `feed/`, beside `app`: the durable worker and WatchTask's streams, and the change
//!   feed's followers; `bus`: in-process signals between them;
//! - `server`: wiring (what runs, and its orderly stop); `config`: flags and environment;
//!   `telemetry`: logs, traces and metrics.

pub mod app;
pub mod bus;
pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod http;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;

pub use config::Config;
pub use grpc::{pb, product_pb};
pub use server::run;
