//! One truth: a change through either door is visible through the other at once, and appears
//! once in the change feed, with the calling service of the door it came through.
use roster::pb::event_service_client::EventServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use roster::pb::{
    GetUserRequest, UpdateUsersPartialRequest, UpdateUsersRequest, WatchUserEventsRequest,
};

use super::*;

#[tokio::test]
async fn a_change_through_either_door_is_seen_by_the_other_and_once_in_the_feed() {
    let (srv, client) = door().await;
    let http = client.token(&server_token("http-caller"));
    let grpc_token = server_token("grpc-caller");
    let mut users = UserServiceClient::new(srv.channel());

    // HTTP writes, gRPC reads at once.
    http.post(
        "/api/v2/users",
        &json!({"users": {"t1": {"id": "t1", "name": "From HTTP", "custom": {"door": "http"}}}}),
    )
    .await
    .ok();
    let seen = users
        .get_user(bearer(
            GetUserRequest {
                id: "t1".into(),
                include_deleted: false,
            },
            &grpc_token,
        ))
        .await
        .expect("GetUser")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(seen.name.as_deref(), Some("From HTTP"));
    assert_eq!(custom_of(&seen), json!({"door": "http"}));

    // gRPC writes, HTTP reads at once.
    users
        .update_users_partial(bearer(
            UpdateUsersPartialRequest {
                users: vec![partial("t1", json!({"name": "From gRPC"}), &[])],
            },
            &grpc_token,
        ))
        .await
        .expect("UpdateUsersPartial");
    let answer = http
        .query_users(&json!({"filter_conditions": {"id": "t1"}}))
        .await
        .ok();
    assert_eq!(answer["users"][0]["name"], "From gRPC");
    assert_eq!(answer["users"][0]["custom"], json!({"door": "http"}));

    // Lifecycle through HTTP: seen by gRPC at once.
    http.post("/api/v2/users/t1/deactivate", &json!({}))
        .await
        .ok();
    let seen = users
        .get_user(bearer(
            GetUserRequest {
                id: "t1".into(),
                include_deleted: false,
            },
            &grpc_token,
        ))
        .await
        .expect("GetUser")
        .into_inner()
        .user
        .expect("user");
    assert!(seen.deactivated_at.is_some(), "deactivated through HTTP");

    // A marker closes the sequence, so that "once" is checked without waiting for silence.
    users
        .update_users(bearer(
            UpdateUsersRequest {
                users: [("marker".to_owned(), user("marker"))].into(),
            },
            &grpc_token,
        ))
        .await
        .expect("UpdateUsers");
    let mut feed = EventServiceClient::new(srv.channel())
        .watch_user_events(bearer(
            WatchUserEventsRequest {
                after_sequence: 0,
                kinds: vec![],
                user_ids: vec![],
            },
            &grpc_token,
        ))
        .await
        .expect("WatchUserEvents")
        .into_inner();
    let mut events = Vec::new();
    let read = async {
        loop {
            let message = feed.message().await.expect("feed").expect("feed open");
            if let Some(event) = message.event {
                let done = event.user_id == "marker";
                events.push((event.kind, event.user_id, event.caller));
                if done {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the feed reaches the marker");
    let caller = |c: &str| Some(c.to_owned());
    assert_eq!(
        events,
        [
            (
                "user.created".to_owned(),
                "t1".to_owned(),
                caller("http-caller")
            ),
            (
                "user.updated".to_owned(),
                "t1".to_owned(),
                caller("grpc-caller")
            ),
            (
                "user.deactivated".to_owned(),
                "t1".to_owned(),
                caller("http-caller")
            ),
            (
                "user.created".to_owned(),
                "marker".to_owned(),
                caller("grpc-caller")
            ),
        ]
    );
}
