//! Caller authentication (SPEC 12): HS256 bearer tokens signed with any of the configured API
//! secrets are accepted, anything else is UNAUTHENTICATED before the handler runs; health needs no
//! token; the caller's identity is the actor of the changes it makes.

use std::time::Duration;

use roster::pb::event_service_client::EventServiceClient;
use roster::pb::{GetUserRequest, UpdateUsersRequest, UserChangeEvent, WatchUserEventsRequest};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::harness::{UserRequestExt, user};
use crate::ops_support::{bearer, health_status, token, unix_now, with_authorization};
use crate::task_support::{Roster, users_client};

/// The two secrets in rotation.
const CURRENT: [&str; 2] = ["current-secret-one", "current-secret-two"];
/// A secret that was rotated out.
const RETIRED: &str = "retired-secret";

async fn start_authenticated() -> Roster {
    Roster::start(|config| {
        config.api_secrets = CURRENT.iter().map(|s| (*s).to_owned()).collect();
    })
    .await
}

fn get_request(id: &str) -> GetUserRequest {
    GetUserRequest {
        id: id.to_owned(),
        include_deleted: false,
    }
}

fn create_request(id: &str) -> UpdateUsersRequest {
    UpdateUsersRequest {
        users: [(id.to_owned(), user(id).with_name("Alice"))].into(),
    }
}

#[tokio::test]
async fn only_tokens_signed_with_a_current_secret_are_accepted_and_health_is_open() {
    let server = start_authenticated().await;
    let channel = server.channel();
    let mut users = users_client(&channel);
    let claims = json!({"service": "billing"});

    // Health and the server's readiness need no token.
    assert_eq!(health_status(&channel).await, Ok(ServingStatus::Serving));

    // Rejected: no token, garbage, wrong scheme, a retired secret, an expired token, a token
    // without a signature (`alg: none` style: header.payload.).
    let retired = token(RETIRED, &claims);
    let expired = token(
        CURRENT[0],
        &json!({"service": "billing", "exp": unix_now() - 3600}),
    );
    let unsigned = {
        let signed = token(CURRENT[0], &claims);
        let (unsigned, _signature) = signed.rsplit_once('.').expect("a JWT has three parts");
        format!("{unsigned}.")
    };
    let no_token = users.update_users(create_request("u1")).await;
    let mut rejected = vec![("no token", no_token)];
    for (what, header) in [
        ("garbage", "Bearer not-a-jwt".to_owned()),
        (
            "wrong scheme",
            format!("Basic {}", token(CURRENT[0], &claims)),
        ),
        ("retired secret", format!("Bearer {retired}")),
        ("expired", format!("Bearer {expired}")),
        ("unsigned", format!("Bearer {unsigned}")),
    ] {
        let result = users
            .update_users(with_authorization(create_request("u1"), &header))
            .await;
        rejected.push((what, result));
    }
    for (what, result) in rejected {
        match result {
            Err(status) => assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{what}: expected UNAUTHENTICATED, got {status:?}"
            ),
            Ok(response) => panic!("{what}: expected UNAUTHENTICATED, got {response:?}"),
        }
    }
    // Reads are refused the same way.
    let status = users
        .get_user(bearer(get_request("u1"), &retired))
        .await
        .expect_err("GetUser with a retired secret");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Accepted: either current secret. The refused writes above never ran.
    let one = token(CURRENT[0], &claims);
    let two = token(CURRENT[1], &json!({"sub": "crm"}));
    let status = users
        .get_user(bearer(get_request("u1"), &one))
        .await
        .expect_err("u1 was never created");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    users
        .update_users(bearer(create_request("u1"), &one))
        .await
        .expect("UpdateUsers with the first current secret");
    let fetched = users
        .get_user(bearer(get_request("u1"), &two))
        .await
        .expect("GetUser with the second current secret")
        .into_inner()
        .user
        .expect("a user");
    assert_eq!(fetched.id, "u1");
    assert_eq!(fetched.name.as_deref(), Some("Alice"));
    // A token with a future `exp` is fine too.
    let fresh = token(
        CURRENT[1],
        &json!({"service": "billing", "exp": unix_now() + 3600}),
    );
    users
        .get_user(bearer(get_request("u1"), &fresh))
        .await
        .expect("GetUser with an unexpired token");

    // Health still needs nothing, even with a bad token attached.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let response = health
        .check(with_authorization(
            tonic_health::pb::HealthCheckRequest {
                service: "roster.v1.UserService".to_owned(),
            },
            "Bearer not-a-jwt",
        ))
        .await
        .expect("health with a bad token");
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);
}

/// Reads events from the feed until `n` arrived (bounded).
async fn first_events(
    channel: &tonic::transport::Channel,
    token: &str,
    n: usize,
) -> Vec<UserChangeEvent> {
    let mut stream = EventServiceClient::new(channel.clone())
        .watch_user_events(bearer(WatchUserEventsRequest::default(), token))
        .await
        .expect("WatchUserEvents with a token")
        .into_inner();
    let mut events = Vec::new();
    while events.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {n} events within 10 s: {events:?}",
                    events.len()
                )
            });
        let response = next
            .expect("the feed does not fail")
            .unwrap_or_else(|| panic!("the feed ended after {events:?}"));
        events.push(response.event.expect("an event"));
    }
    events
}

#[tokio::test]
async fn the_callers_identity_is_the_actor_of_its_changes() {
    let server = start_authenticated().await;
    let channel = server.channel();
    let mut users = users_client(&channel);

    // `service` wins over `sub`; `sub` alone is the identity too.
    let billing = token(CURRENT[0], &json!({"service": "billing", "sub": "someone"}));
    let crm = token(CURRENT[1], &json!({"sub": "crm"}));
    users
        .update_users(bearer(create_request("a1"), &billing))
        .await
        .expect("UpdateUsers as billing");
    users
        .update_users(bearer(create_request("a2"), &crm))
        .await
        .expect("UpdateUsers as crm");

    // The feed needs a token as well.
    let status = EventServiceClient::new(channel.clone())
        .watch_user_events(WatchUserEventsRequest::default())
        .await
        .expect_err("WatchUserEvents without a token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let events = first_events(&channel, &billing, 2).await;
    let by_user = |id: &str| {
        events
            .iter()
            .find(|e| e.user_id == id)
            .unwrap_or_else(|| panic!("no event for {id} in {events:?}"))
    };
    let a1 = by_user("a1");
    assert_eq!(a1.kind, "user.created");
    assert_eq!(a1.actor, "billing", "{a1:?}");
    assert_eq!(a1.caller.as_deref(), Some("billing"), "{a1:?}");
    assert_eq!(a1.created_by_id, None, "{a1:?}");
    let a2 = by_user("a2");
    assert_eq!(a2.kind, "user.created");
    assert_eq!(a2.actor, "crm", "{a2:?}");
    assert_eq!(a2.caller.as_deref(), Some("crm"), "{a2:?}");
    assert_eq!(a2.created_by_id, None, "{a2:?}");
}
