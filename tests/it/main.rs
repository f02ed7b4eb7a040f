//! roster's integration tests: one binary, one real server per test.
//!
//! Every test starts `roster::run` on `127.0.0.1:0` against a fresh database (a fresh SQLite file,
//! or a fresh PostgreSQL database when `ROSTER_TEST_DB=postgres`), waits for grpc health to report
//! SERVING, and talks to it with the generated tonic clients. See `harness.rs`.

mod harness;

mod devices;
mod fault_crash;
mod fault_outage;
mod fault_support;
mod feed;
mod lifecycle;
mod load_sustained;
mod migrations;
mod moderation;
mod presence;
mod product_support;
mod products;
mod roles;
mod serving;
mod task_crash;
mod task_replicas;
mod task_support;
mod tasks;
mod tokens;
mod users_get;
mod users_partial;
mod users_query;
mod users_upsert;

mod ops_auth;
mod ops_listen;
mod ops_metrics;
mod ops_nodelay;
mod ops_otlp;
mod ops_run;
mod ops_scopes;
mod ops_shedding;
mod ops_shutdown;
mod ops_support;
mod ops_tls;

mod bad_input;
mod concurrency;
mod garbage_frames;
