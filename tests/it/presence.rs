//! Presence: a verified token makes its user active; `online` follows the presence window and
//! `invisible`, judged against the server's clock.

use std::time::Duration;

use crate::tokens::{SECRET, server_with_secret, token_ok, verify};

use crate::support::*;

#[tokio::test]
async fn a_verified_user_is_online_until_the_window_passes() {
    let srv = server_with_secret(SECRET).await;
    let created = srv.upsert_ok([user("u1")]).await.remove("u1").expect("u1");
    assert!(!created.online);
    assert_eq!(created.last_active, None);
    let token = token_ok(&srv, "u1").await;

    let verified = verify(&srv, &token).await.expect("VerifyUserToken");

    assert!(verified.online, "{verified:?}");
    assert!(verified.last_active.is_some());
    let read = srv.get_ok("u1").await;
    assert!(read.online);
    assert_eq!(read.last_active, verified.last_active);
    assert_eq!(
        read.updated_at, created.updated_at,
        "presence is not a change of the user"
    );
    srv.clock().advance(Duration::from_secs(59));
    assert!(srv.get_ok("u1").await.online, "still within 60 s");

    srv.clock().advance(Duration::from_secs(2));

    let later = srv.get_ok("u1").await;
    assert!(!later.online, "offline after the window: {later:?}");
    assert_eq!(later.last_active, verified.last_active);
}

#[tokio::test]
async fn an_invisible_user_is_never_online() {
    let srv = server_with_secret(SECRET).await;
    let mut request = user("u1");
    request.invisible = true;
    srv.upsert_ok([request]).await;
    let token = token_ok(&srv, "u1").await;

    let verified = verify(&srv, &token).await.expect("VerifyUserToken");

    assert!(!verified.online, "{verified:?}");
    assert!(verified.last_active.is_some(), "activity is still recorded");
    assert!(!srv.get_ok("u1").await.online);
    srv.update_partial_ok(partial("u1", serde_json::json!({"invisible": false}), &[]))
        .await;
    assert!(
        srv.get_ok("u1").await.online,
        "visible again, within the window"
    );
}

#[tokio::test]
async fn last_active_is_written_at_most_once_per_quarter_window() {
    let srv = server_with_secret(SECRET).await;
    srv.upsert_ok([user("u1")]).await;
    let token = token_ok(&srv, "u1").await;
    let first = verify(&srv, &token).await.expect("VerifyUserToken");

    srv.clock().advance(Duration::from_secs(10));
    let soon = verify(&srv, &token).await.expect("VerifyUserToken");
    srv.clock().advance(Duration::from_secs(6));
    let later = verify(&srv, &token).await.expect("VerifyUserToken");

    assert_eq!(
        soon.last_active, first.last_active,
        "10 s later: not written"
    );
    assert!(
        micros(&later.last_active) >= micros(&first.last_active) + 16_000_000,
        "16 s later (a 60 s window's quarter is 15 s): written"
    );
    assert!(later.online);
}

#[tokio::test]
async fn the_presence_window_is_configurable() {
    let secret = SECRET.parse().expect("secret");
    let srv = Launch::new()
        .config(|config| {
            config.user_token_secret = Some(secret);
            config.presence_window_seconds = 5;
        })
        .start()
        .await;
    srv.upsert_ok([user("u1")]).await;
    let token = token_ok(&srv, "u1").await;
    verify(&srv, &token).await.expect("VerifyUserToken");

    srv.clock().advance(Duration::from_secs(6));

    assert!(!srv.get_ok("u1").await.online);
}
