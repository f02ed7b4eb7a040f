//! `UserService` writes and reads: full replaces, partial updates, GetUser, QueryUsers.

mod get;
mod partial;
mod query;
mod upsert;
