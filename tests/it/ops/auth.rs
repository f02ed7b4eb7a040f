//! Caller authentication (SPEC 12): HS256 bearer tokens signed with any of the configured API
//! secrets are accepted, anything else is UNAUTHENTICATED before the handler runs; health needs no
//! token; the caller's identity is the actor of the changes it makes.

use std::time::Duration;

use roster::pb::event_service_client::EventServiceClient;
use roster::pb::{GetUserRequest, UpdateUsersRequest, UserChangeEvent, WatchUserEventsRequest};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::*;

/// The two secrets in rotation.
const CURRENT: [&str; 2] = ["current-secret-one", "current-secret-two"];
/// A secret that was rotated out.
const RETIRED: &str = "retired-secret";

async fn start_authenticated() -> Server {
    Launch::new().api_secrets(&CURRENT).start().await
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

/// `micros` since the epoch as a NumericDate (seconds, with a fraction).
fn seconds(micros: i64) -> serde_json::Value {
    json!(micros as f64 / 1e6)
}

const HOUR: i64 = 3_600_000_000;

/// Whether GetUser with `token` gets past caller authentication (u1 does not exist: NOT_FOUND).
async fn admitted(channel: &tonic::transport::Channel, token: &str) -> Result<(), tonic::Status> {
    match users_client(channel)
        .get_user(bearer(get_request("u1"), token))
        .await
    {
        Err(status) if status.code() == Code::NotFound => Ok(()),
        Err(status) => Err(status),
        Ok(response) => panic!("u1 was never created: {response:?}"),
    }
}

#[tokio::test]
async fn caller_tokens_with_a_future_or_malformed_time_claim_are_refused() {
    let server = start_authenticated().await;
    let channel = server.channel();
    let now = now_micros();

    for (what, claims) in [
        (
            "nbf a year ahead",
            json!({"nbf": seconds(now + 8760 * HOUR)}),
        ),
        ("iat an hour ahead", json!({"iat": seconds(now + HOUR)})),
        ("nbf not a number", json!({"nbf": "x"})),
        ("iat not a number", json!({"iat": "x"})),
        ("exp not a number", json!({"exp": "x"})),
        ("exp null", json!({"exp": null})),
    ] {
        let mut claims = claims;
        claims["service"] = json!("billing");
        let refused = admitted(&channel, &token(CURRENT[0], &claims))
            .await
            .expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
    }
    let sound = json!({"service": "billing", "iat": seconds(now), "nbf": seconds(now), "exp": seconds(now + HOUR)});
    admitted(&channel, &token(CURRENT[0], &sound))
        .await
        .expect("a token with sound time claims");
}

#[tokio::test]
async fn caller_token_time_claims_get_the_token_leeway_at_its_edges() {
    const LEEWAY: i64 = 5_000_000;
    let server = start_authenticated().await;
    let channel = server.channel();
    let now = now_micros();
    let signed =
        |claim: &str, at: i64| token(CURRENT[1], &json!({"sub": "crm", claim: seconds(at)}));
    // Time only moves on between signing and the call, so the edge that passing time cannot
    // cross is exact; the other side has two seconds of slack.
    for (claim, at) in [
        ("exp", now - LEEWAY + 2_000_000),
        ("nbf", now + LEEWAY),
        ("iat", now + LEEWAY),
    ] {
        admitted(&channel, &signed(claim, at))
            .await
            .unwrap_or_else(|e| panic!("{claim} within the leeway: {e:?}"));
    }
    for (claim, at) in [
        ("exp", now - LEEWAY),
        ("nbf", now + LEEWAY + 2_000_000),
        ("iat", now + LEEWAY + 2_000_000),
    ] {
        let refused = admitted(&channel, &signed(claim, at))
            .await
            .expect_err(claim);
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{claim}: {refused:?}"
        );
    }

    let strict = Launch::new()
        .api_secrets(&CURRENT)
        .config(|config| config.token_leeway_seconds = 0)
        .start()
        .await;
    let channel = strict.channel();
    let now = now_micros();
    let expired = admitted(&channel, &signed("exp", now))
        .await
        .expect_err("exp now");
    assert_eq!(expired.code(), Code::Unauthenticated, "{expired:?}");
    let early = admitted(&channel, &signed("nbf", now + 2_000_000))
        .await
        .expect_err("nbf ahead");
    assert_eq!(early.code(), Code::Unauthenticated, "{early:?}");
    admitted(&channel, &signed("exp", now + 2_000_000))
        .await
        .expect("unexpired with no leeway");
}
