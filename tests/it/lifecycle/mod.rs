//! Lifecycle: deactivate, reactivate, delete and restore users, and the product fan-out that
//! tells every configured product about it.

mod products;
mod users;
