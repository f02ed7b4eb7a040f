//! The schema: migrations applied once by replicas starting together, a newer schema refused,
//! and data written under an older schema surviving the migrations after it.

mod migrate;
mod upgrade;
