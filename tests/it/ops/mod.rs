//! Operating roster: health and reflection, auth, listen addresses, TLS, load shedding, metrics,
//! traces, per-caller scopes, TCP_NODELAY to PostgreSQL, what `run` owns, and shutdown on SIGTERM.

mod auth;
mod listen;
mod metrics;
mod nodelay;
mod otlp;
mod run;
mod scopes;
mod serving;
mod shedding;
mod shutdown;
mod tls;
