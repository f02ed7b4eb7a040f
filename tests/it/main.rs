//! roster's integration tests: one binary, one real server per test.
//!
//! Every test starts roster (in process with `support::Launch`, or the real binary with
//! `support::Process::launch`) against a fresh database: a fresh SQLite file, or a fresh PostgreSQL
//! database when `ROSTER_TEST_DB=postgres`. A test that cannot run on the current database says so
//! loudly (`!!! SKIPPED ...`, see `support::db::skip_unless_postgres`).
//!
//! Areas:
//! - `users`: UpdateUsers, UpdateUsersPartial, GetUser, QueryUsers
//! - `lifecycle`: deactivate, delete, restore, and the product fan-out
//! - `tasks`: TaskService, crash recovery, replicas
//! - `feed`: the change feed
//! - `http`: the Stream-compatible HTTP door (auth, errors, hostile input, shapes, one truth)
//! - `roles`, `tokens`, `presence`, `devices`, `moderation`: one service each
//! - `schema`: migrations
//! - `ops`: serving, auth, listen, TLS, shedding, metrics, traces, run and shutdown
//! - `faults`: bad input, garbage frames, concurrency, outage, crash, sustained load

mod support;

mod devices;
mod faults;
mod feed;
mod http;
mod lifecycle;
mod moderation;
mod ops;
mod presence;
mod roles;
mod schema;
mod tasks;
mod tokens;
mod users;
