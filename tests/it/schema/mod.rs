//! The schema: migrations applied once by replicas starting together, and a newer schema refused.

mod migrate;
