//! What the integration tests share, in one place:
//!
//! - `db`: the `ROSTER_TEST_DB` choice, a fresh database per test, a private PostgreSQL cluster,
//!   raw connections, and `skip_unless_postgres` / `skip` (the only way a test skips, loudly);
//! - `server`: in-process servers, all from the `Launch` builder, stopped within `STOP_DEADLINE`;
//! - `door_client`: a raw HTTP/1.1 client of the HTTP door (status, headers and JSON body as sent);
//! - `process`: the real `roster` binary as a child process, from `Process::launch`;
//! - `proto`: channels, clients, request builders, JSON <-> `Struct`, tokens, the change-feed
//!   follower and the shared assertions;
//! - `tasks`: following lifecycle tasks; `product`: a fake product hook.
//!
//! Tests `use crate::support::*;`.

pub mod db;
pub mod door_client;
pub mod process;
pub mod product;
pub mod proto;
pub mod server;
pub mod tasks;

pub use db::*;
pub use door_client::*;
pub use process::*;
pub use product::*;
pub use proto::*;
pub use server::*;
pub use tasks::*;
