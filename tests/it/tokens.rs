//! `TokenService`: issuing, verifying (signature, expiry by the server's clock, revocation, the
//! user's state) and revoking user tokens.

use std::time::Duration;

use roster::pb::{
    BanUserRequest, CreateUserTokenRequest, CreateUserTokenResponse, DeactivateUserRequest,
    DeleteUsersRequest, ReactivateUserRequest, RevokeUserTokensRequest, User,
    VerifyUserTokenRequest,
};
use serde_json::json;
use tonic::{Code, Status};

use crate::support::*;

pub const SECRET: &str = "roster-test-user-token-secret-0123456789";
const OTHER_SECRET: &str = "another-roster-user-token-secret-9876543210";

/// A server that issues and verifies user tokens with `secret`.
pub async fn server_with_secret(secret: &str) -> Server {
    let secret = secret.parse().expect("a secret");
    Launch::new()
        .config(|config| config.user_token_secret = Some(secret))
        .start()
        .await
}

pub async fn create_token(
    srv: &Server,
    user_id: &str,
    expires_in: Option<Duration>,
) -> Result<CreateUserTokenResponse, Status> {
    let expires_in = expires_in.map(|d| prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).expect("seconds"),
        nanos: i32::try_from(d.subsec_nanos()).expect("nanos"),
    });
    let response = srv
        .tokens()
        .create_user_token(CreateUserTokenRequest {
            user_id: user_id.to_owned(),
            expires_in,
        })
        .await?;
    Ok(response.into_inner())
}

pub async fn token_ok(srv: &Server, user_id: &str) -> String {
    create_token(srv, user_id, Some(Duration::from_secs(3600)))
        .await
        .expect("CreateUserToken")
        .token
}

pub async fn verify(srv: &Server, token: &str) -> Result<User, Status> {
    let response = srv
        .tokens()
        .verify_user_token(VerifyUserTokenRequest {
            token: token.to_owned(),
        })
        .await?;
    Ok(response
        .into_inner()
        .user
        .expect("VerifyUserTokenResponse without a user"))
}

async fn revoke(srv: &Server, ids: &[&str]) -> Result<(), Status> {
    srv.tokens()
        .revoke_user_tokens(RevokeUserTokensRequest {
            user_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            before: None,
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_valid_token_verifies_to_its_user() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1").with_name("One")]).await;

    let created = create_token(&srv, "u1", Some(Duration::from_secs(600)))
        .await
        .expect("CreateUserToken");
    let response = srv
        .tokens()
        .verify_user_token(VerifyUserTokenRequest {
            token: created.token.clone(),
        })
        .await
        .expect("VerifyUserToken")
        .into_inner();

    assert_eq!(
        micros(&created.expires_at) - micros(&created.issued_at),
        600_000_000
    );
    assert_eq!(response.issued_at, created.issued_at);
    assert_eq!(response.expires_at, created.expires_at);
    let verified = response.user.expect("a user");
    assert_eq!(verified.id, "u1");
    assert_eq!(verified.name.as_deref(), Some("One"));
    let parts: Vec<&str> = created.token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {}", created.token);
}

#[tokio::test]
async fn a_token_without_expires_in_does_not_expire() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;

    let created = create_token(&srv, "u1", None)
        .await
        .expect("CreateUserToken");
    srv.clock()
        .advance(Duration::from_secs(5 * 365 * 24 * 3600));

    assert_eq!(created.expires_at, None);
    verify(&srv, &created.token)
        .await
        .expect("still valid years later");
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let token = create_token(&srv, "u1", Some(Duration::from_secs(60)))
        .await
        .expect("CreateUserToken")
        .token;
    verify(&srv, &token).await.expect("valid at first");

    // Refused once `exp` plus the leeway (`--token-leeway-seconds`, 5 by default) has passed.
    srv.clock().advance(Duration::from_secs(60 + 5));

    let expired = expect_err(verify(&srv, &token).await);
    assert_reason(&expired, Code::Unauthenticated, "TOKEN_EXPIRED");
}

#[tokio::test]
async fn a_token_signed_with_another_secret_or_garbage_is_invalid() {
    let ours = server_with_secret(SECRET).await;
    let theirs = server_with_secret(OTHER_SECRET).await;
    ours.upsert_ok([user("u1")]).await;
    theirs.upsert_ok([user("u1")]).await;
    let foreign = token_ok(&theirs, "u1").await;

    let wrong_secret = expect_err(verify(&ours, &foreign).await);
    let garbage = expect_err(verify(&ours, "not-a-token").await);
    let empty = expect_err(verify(&ours, "").await);

    for status in [&wrong_secret, &garbage, &empty] {
        assert_reason(status, Code::Unauthenticated, "TOKEN_INVALID");
    }
    let huge = expect_err(verify(&ours, &"a".repeat(8193)).await);
    assert_invalid(&huge, "token");
}

#[tokio::test]
async fn tokens_issued_before_revoke_user_tokens_are_refused_and_new_ones_work() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1"), user("u2")]).await;
    let old = token_ok(&srv, "u1").await;
    let other = token_ok(&srv, "u2").await;
    srv.clock().advance(Duration::from_secs(2));

    revoke(&srv, &["u1"]).await.expect("RevokeUserTokens");

    let refused = expect_err(verify(&srv, &old).await);
    assert_reason(&refused, Code::Unauthenticated, "TOKEN_REVOKED");
    verify(&srv, &other)
        .await
        .expect("another user's token is untouched");
    let fresh = token_ok(&srv, "u1").await;
    verify(&srv, &fresh)
        .await
        .expect("a token issued right after the revocation is good");
    let user = srv.get_ok("u1").await;
    assert!(user.revoke_tokens_issued_before.is_some(), "{user:?}");
    let events = srv.events(&["user.tokens_revoked"], 1).await;
    assert_eq!(events[0].user_id, "u1");
    let unknown = expect_err(revoke(&srv, &["u1", "nobody"]).await);
    assert_reason(&unknown, Code::NotFound, "USER_NOT_FOUND");
    assert_invalid(&expect_err(revoke(&srv, &[]).await), "user_ids");
}

#[tokio::test]
async fn a_partial_update_of_revoke_tokens_issued_before_revokes_too() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let old = token_ok(&srv, "u1").await;
    srv.clock().advance(Duration::from_secs(2));
    let cutoff = roster::domain::time::format_rfc3339(srv.clock().now());

    srv.update_partial_ok(partial(
        "u1",
        json!({"revoke_tokens_issued_before": cutoff}),
        &[],
    ))
    .await;

    let refused = expect_err(verify(&srv, &old).await);
    assert_reason(&refused, Code::Unauthenticated, "TOKEN_REVOKED");
    let events = srv
        .events(&["user.updated", "user.tokens_revoked"], 2)
        .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["user.updated", "user.tokens_revoked"]);
}

#[tokio::test]
async fn a_token_without_iat_is_refused_once_a_revocation_is_set() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let without_iat = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"user_id": "u1"}),
        &key,
    )
    .expect("sign");
    verify(&srv, &without_iat)
        .await
        .expect("accepted while nothing is revoked");

    revoke(&srv, &["u1"]).await.expect("RevokeUserTokens");

    let refused = expect_err(verify(&srv, &without_iat).await);
    assert_reason(&refused, Code::Unauthenticated, "TOKEN_REVOKED");
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"user_id": "u1", "iat": 4_000_000_000u64}),
        &key,
    )
    .expect("sign");
    let wrong_alg = expect_err(verify(&srv, &hs512).await);
    assert_reason(&wrong_alg, Code::Unauthenticated, "TOKEN_INVALID");
}

#[tokio::test]
async fn a_deactivated_user_is_refused_and_accepted_again_once_reactivated() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let token = token_ok(&srv, "u1").await;
    srv.users()
        .deactivate_user(DeactivateUserRequest {
            user_id: "u1".to_owned(),
            ..Default::default()
        })
        .await
        .expect("DeactivateUser");

    let refused = expect_err(verify(&srv, &token).await);

    assert_reason(&refused, Code::PermissionDenied, "USER_DEACTIVATED");
    assert!(srv.get_ok("u1").await.deactivated_at.is_some());
    srv.users()
        .reactivate_user(ReactivateUserRequest {
            user_id: "u1".to_owned(),
            ..Default::default()
        })
        .await
        .expect("ReactivateUser");
    let back = verify(&srv, &token).await.expect("accepted again");
    assert_eq!(back.deactivated_at, None);
}

#[tokio::test]
async fn a_deleted_user_is_refused() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("soft"), user("hard")]).await;
    let soft = token_ok(&srv, "soft").await;
    let hard = token_ok(&srv, "hard").await;
    for (id, mode) in [("soft", "soft"), ("hard", "hard")] {
        let both = if mode == "hard" { "hard" } else { "" };
        let task = srv
            .users()
            .delete_users(DeleteUsersRequest {
                user_ids: vec![id.to_owned()],
                user: mode.to_owned(),
                messages: both.to_owned(),
                conversations: both.to_owned(),
                ..Default::default()
            })
            .await
            .expect("DeleteUsers")
            .into_inner()
            .task_id;
        srv.wait_for_task(&task).await;
    }

    let soft_refused = expect_err(verify(&srv, &soft).await);
    let hard_refused = expect_err(verify(&srv, &hard).await);

    assert_reason(&soft_refused, Code::PermissionDenied, "USER_DELETED");
    let deleted = srv
        .users()
        .get_user(roster::pb::GetUserRequest {
            id: "soft".to_owned(),
            include_deleted: true,
        })
        .await
        .expect("GetUser include_deleted")
        .into_inner()
        .user
        .expect("a user");
    assert!(deleted.deleted_at.is_some(), "{deleted:?}");
    assert_reason(&hard_refused, Code::Unauthenticated, "USER_NOT_FOUND");
    let issue = expect_err(create_token(&srv, "soft", None).await);
    assert_reason(&issue, Code::FailedPrecondition, "USER_DELETED");
    let issue = expect_err(create_token(&srv, "hard", None).await);
    assert_reason(&issue, Code::NotFound, "USER_NOT_FOUND");
}

#[tokio::test]
async fn a_banned_user_is_refused_until_the_ban_expires_and_a_shadow_ban_is_let_in() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1"), user("u2")]).await;
    let token = token_ok(&srv, "u1").await;
    let shadow = token_ok(&srv, "u2").await;
    for (id, shadow) in [("u1", false), ("u2", true)] {
        srv.moderation()
            .ban_user(BanUserRequest {
                target_user_id: id.to_owned(),
                timeout: 5,
                shadow,
                ..Default::default()
            })
            .await
            .expect("BanUser");
    }

    let refused = expect_err(verify(&srv, &token).await);
    assert_reason(&refused, Code::PermissionDenied, "USER_BANNED");
    let let_in = verify(&srv, &shadow)
        .await
        .expect("shadow-banned users act");
    assert!(let_in.shadow_banned);
    srv.clock().advance(Duration::from_secs(5 * 60));
    verify(&srv, &token)
        .await
        .expect("accepted once the ban has expired");
}

#[tokio::test]
async fn create_user_token_is_checked() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;

    let unknown = expect_err(create_token(&srv, "nobody", None).await);
    assert_reason(&unknown, Code::NotFound, "USER_NOT_FOUND");
    let zero = expect_err(create_token(&srv, "u1", Some(Duration::ZERO)).await);
    assert_invalid(&zero, "expires_in");
    let too_long =
        expect_err(create_token(&srv, "u1", Some(Duration::from_secs(3651 * 24 * 3600))).await);
    assert_invalid(&too_long, "expires_in");
    let bad_id = expect_err(create_token(&srv, "bad id", None).await);
    assert_invalid(&bad_id, "user_id");
}

#[tokio::test]
async fn without_a_secret_tokens_are_a_failed_precondition_and_revocation_still_works() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    let create = expect_err(create_token(&srv, "u1", None).await);
    let verify = expect_err(verify(&srv, "a.b.c").await);

    assert_reason(&create, Code::FailedPrecondition, "USER_TOKENS_DISABLED");
    assert_reason(&verify, Code::FailedPrecondition, "USER_TOKENS_DISABLED");
    revoke(&srv, &["u1"])
        .await
        .expect("RevokeUserTokens needs no secret");
}

/// A user token over `claims`, signed with `SECRET` (any claim types, as another issuer may).
fn signed(claims: &serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &key,
    )
    .expect("sign")
}

/// `micros` since the epoch as a NumericDate (seconds, with a fraction).
fn seconds(micros: i64) -> serde_json::Value {
    json!(micros as f64 / 1e6)
}

const HOUR: i64 = 3_600_000_000;
/// The default `--token-leeway-seconds`, in micros.
const LEEWAY: i64 = 5_000_000;

#[tokio::test]
async fn user_tokens_with_a_future_or_malformed_time_claim_are_refused() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let now = srv.clock().now();

    for (what, claims, reason) in [
        (
            "nbf a year ahead",
            json!({"nbf": seconds(now + 8760 * HOUR)}),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "iat an hour ahead",
            json!({"iat": seconds(now + HOUR)}),
            "TOKEN_NOT_YET_VALID",
        ),
        ("nbf not a number", json!({"nbf": "x"}), "TOKEN_INVALID"),
        ("iat not a number", json!({"iat": "x"}), "TOKEN_INVALID"),
        ("exp not a number", json!({"exp": "x"}), "TOKEN_INVALID"),
        ("exp null", json!({"exp": null}), "TOKEN_INVALID"),
        ("nbf a boolean", json!({"nbf": true}), "TOKEN_INVALID"),
    ] {
        let mut claims = claims;
        claims["user_id"] = json!("u1");
        let refused = expect_err(verify(&srv, &signed(&claims)).await);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        assert_reason(&refused, Code::Unauthenticated, reason);
    }
    let fine = json!({"user_id": "u1", "iat": seconds(now), "nbf": seconds(now), "exp": seconds(now + HOUR)});
    verify(&srv, &signed(&fine))
        .await
        .expect("a token with sound time claims");
}

#[tokio::test]
async fn a_user_token_issued_in_the_future_does_not_survive_revoke_user_tokens() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let ahead = signed(&json!({"user_id": "u1", "iat": seconds(srv.clock().now() + HOUR)}));

    revoke(&srv, &["u1"]).await.expect("RevokeUserTokens");

    let refused = expect_err(verify(&srv, &ahead).await);
    assert_reason(&refused, Code::Unauthenticated, "TOKEN_NOT_YET_VALID");
    let fresh = token_ok(&srv, "u1").await;
    verify(&srv, &fresh)
        .await
        .expect("a token issued now is good");
}

#[tokio::test]
async fn user_token_time_claims_get_the_leeway_at_its_edges() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let now = srv.clock().now();
    let token = |claim: &str, at: i64| signed(&json!({"user_id": "u1", claim: seconds(at)}));
    // Time only moves on between signing and verifying, so the edge of each limit that the
    // passing time cannot cross is exact; the other side has two seconds of slack.
    let within = [
        ("exp", now - LEEWAY + 2_000_000),
        ("nbf", now + LEEWAY),
        ("iat", now + LEEWAY),
    ];
    let beyond = [
        ("exp", now - LEEWAY, "TOKEN_EXPIRED"),
        ("nbf", now + LEEWAY + 2_000_000, "TOKEN_NOT_YET_VALID"),
        ("iat", now + LEEWAY + 2_000_000, "TOKEN_NOT_YET_VALID"),
    ];

    for (claim, at) in within {
        verify(&srv, &token(claim, at))
            .await
            .unwrap_or_else(|e| panic!("{claim} within the leeway: {e:?}"));
    }
    for (claim, at, reason) in beyond {
        let refused = expect_err(verify(&srv, &token(claim, at)).await);
        assert_reason(&refused, Code::Unauthenticated, reason);
    }

    let strict = Launch::new()
        .config(|config| {
            config.user_token_secret = Some(SECRET.parse().expect("a secret"));
            config.token_leeway_seconds = 0;
        })
        .start()
        .await;
    strict.upsert_ok([user("u1")]).await;
    let now = strict.clock().now();
    let expired = expect_err(verify(&strict, &token("exp", now)).await);
    assert_reason(&expired, Code::Unauthenticated, "TOKEN_EXPIRED");
    let early = expect_err(verify(&strict, &token("iat", now + 2_000_000)).await);
    assert_reason(&early, Code::Unauthenticated, "TOKEN_NOT_YET_VALID");
    verify(&strict, &token("exp", now + 2_000_000))
        .await
        .expect("unexpired with no leeway");
}

#[tokio::test]
async fn verify_user_token_refusals_name_no_library_internals() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let b64 = |text: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    };
    let claims = b64(r#"{"user_id":"u1"}"#);
    let good = token_ok(&srv, "u1").await;
    let (good_head, good_signature) = good.split_once('.').expect("a JWT");
    let foreign = {
        let key = jsonwebtoken::EncodingKey::from_secret(OTHER_SECRET.as_bytes()).expect("key");
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(&header, &json!({"user_id": "u1"}), &key).expect("sign")
    };
    let cases = [
        (
            "alg none",
            format!("{}.{claims}.", b64(r#"{"alg":"none","typ":"JWT"}"#)),
        ),
        (
            "alg unknown",
            format!("{}.{claims}.x", b64(r#"{"alg":"XX999"}"#)),
        ),
        (
            "header not JSON",
            format!("{}.{claims}.x", b64("{not json")),
        ),
        ("header not base64", format!("!!!.{claims}.x")),
        ("two parts", format!("{good_head}.{claims}")),
        (
            "claims not base64",
            format!("{good_head}.***.{good_signature}"),
        ),
        ("signed by another secret", foreign),
        ("user_id a number", signed(&json!({"user_id": 7}))),
        ("user_id missing", signed(&json!({"sub": "u1"}))),
        (
            "nbf a string",
            signed(&json!({"user_id": "u1", "nbf": "x"})),
        ),
        (
            "exp an object",
            signed(&json!({"user_id": "u1", "exp": {"at": 1}})),
        ),
    ];

    for (what, token) in cases {
        let refused = expect_err(verify(&srv, &token).await);
        assert_reason(&refused, Code::Unauthenticated, "TOKEN_INVALID");
        let message = refused.message();
        for internal in [
            "JSON", "json", "line ", "column", "variant", "expected", "::", "Error", "Base64",
            "base64 ", "Utf8",
        ] {
            assert!(
                !message.contains(internal),
                "{what}: {message:?} mentions {internal:?}"
            );
        }
        assert!(
            !message.split(|c: char| !c.is_alphanumeric()).any(|word| {
                word.chars().next().is_some_and(char::is_uppercase)
                    && word.chars().skip(1).any(char::is_uppercase)
                    && word.chars().any(char::is_lowercase)
            }),
            "{what}: {message:?} names a type"
        );
    }
}
