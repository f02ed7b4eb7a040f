//! The change feed (SPEC section 9): `EventService.WatchUserEvents` replays from a sequence and
//! follows live; every change arrives exactly once, in strictly increasing sequence order, even
//! with concurrent writers, reconnects, transactions that commit out of order (PostgreSQL) and
//! sequences lost to rollbacks; events carry kind, user, actor, time and the user after the
//! change; filters, errors and retention.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use roster::pb::role_service_client::RoleServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use roster::pb::{
    CreateRoleRequest, DeactivateUserRequest, DeleteRoleRequest, DeleteUsersRequest,
    ReactivateUserRequest, RestoreUsersRequest, TaskStatus, UpdateUsersPartialRequest,
    UpdateUsersRequest, UserChangeEvent,
};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

use crate::support::*;

mod clock;
mod events;
mod gaps;
mod order;
mod retention;

/// Bound on an event reaching a follower (the contract says about 250 ms).
const LIVE: Duration = Duration::from_secs(5);
/// Bound on a whole concurrent-writers run being followed to its end.
const RUN: Duration = Duration::from_secs(120);

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

async fn upsert_named(ch: &Channel, id: &str, name: &str) {
    let users = [(id.to_owned(), user(id).with_name(name))].into();
    UserServiceClient::new(ch.clone())
        .update_users(UpdateUsersRequest { users })
        .await
        .unwrap_or_else(|s| panic!("UpdateUsers {id}: {s:?}"));
}
