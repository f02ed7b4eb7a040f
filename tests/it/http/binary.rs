//! The HTTP door of the real binary, configured from the environment as an operator would, and
//! its metrics labelled by route template.
use super::*;

#[tokio::test]
async fn the_binary_serves_the_door_at_http_listen_with_the_configured_key() {
    let db = TestDb::create().await;
    let roster = Process::launch("http-door", db.url())
        .env("ROSTER_API_SECRETS", SECRET)
        .env("ROSTER_API_KEY", TEST_API_KEY)
        .start()
        .await;
    let client = HttpClient::new(roster.http_addr).token(&server_token("sdk"));
    let answer = client
        .post("/api/v2/users", &json!({"users": {"bin": {"id": "bin"}}}))
        .await
        .ok();
    assert_eq!(answer["users"]["bin"]["id"], "bin");
    client
        .key(Some("not-this-app"))
        .query_users(&json!({"filter_conditions": {}}))
        .await
        .error(401, 5);
    assert_eq!(everyone(&client).await, ["bin"]);
}

#[tokio::test]
async fn metrics_name_the_route_template_never_the_raw_path() {
    let (_srv, client) = door().await;
    let ghost = "metrics-ghost-user-7f3a";
    client
        .post(&format!("/api/v2/users/{ghost}/deactivate"), &json!({}))
        .await
        .error(404, 16);
    client
        .get("/api/v2/no-such-route-7f3a")
        .await
        .error(404, 16);
    let rendered = roster::telemetry::metrics::handle().render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("roster_http_requests_total")
                && l.contains("route=\"/api/v2/users/{user_id}/deactivate\"")
                && l.contains("status=\"404\"")),
        "{rendered}"
    );
    assert!(
        !rendered.contains(ghost),
        "a caller's path never becomes a label"
    );
    assert!(!rendered.contains("no-such-route-7f3a"));
    assert!(rendered.contains("roster_http_unrouted_total"));
}
