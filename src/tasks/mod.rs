//! The durable worker: claims tasks with a lease, heartbeats, runs items one by one (each item's
//! effect committed with its "done" mark), reports progress to watchers, purges old tasks.
mod hub;
mod products;
mod worker;

pub use hub::{Hub, TaskChanged};
pub use products::{BoxFuture, NoProducts, ProductCall, Products, RetryPolicy};
pub use worker::{WorkerConfig, spawn_workers};
