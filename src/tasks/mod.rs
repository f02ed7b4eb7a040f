//! The durable worker: claims tasks with a lease, heartbeats, runs items one by one (each item's
//! effect committed with its "done" mark), reports progress to watchers, purges old tasks; and the
//! streams that follow a task for its watchers (`watch`).
mod products;
pub mod watch;
mod worker;

pub use products::{BoxFuture, NoProducts, ProductCall, Products, RetryPolicy};
pub use worker::{WorkerConfig, spawn_workers};
