//! The server itself: health, reflection, shutdown, restart on existing data.

use prost::Message;
use roster::pb::{CreateRoleRequest, ListRolesRequest};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_user_service() {
    let srv = Launch::new().start().await;
    let mut health = HealthClient::new(srv.channel());

    for service in ["", "roster.v1.UserService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| panic!("health of {service:?}: {status:?}"));
        assert_eq!(
            response.get_ref().status(),
            ServingStatus::Serving,
            "health of {service:?}"
        );
    }
    let unknown = expect_err(
        health
            .check(HealthCheckRequest {
                service: "no.such.Service".to_owned(),
            })
            .await,
    );
    assert_eq!(unknown.code(), Code::NotFound);
}

/// Sends one v1 reflection request and returns the one response.
async fn reflect(srv: &Server, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(srv.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let response: ServerReflectionResponse = responses
        .next()
        .await
        .expect("a reflection response")
        .expect("reflection response is not an error");
    response
        .message_response
        .expect("reflection response has a body")
}

#[tokio::test]
async fn reflection_v1_lists_the_services() {
    let srv = Launch::new().start().await;

    let MessageResponse::ListServicesResponse(list) =
        reflect(&srv, MessageRequest::ListServices(String::new())).await
    else {
        panic!("ListServices did not answer with a service list");
    };

    let names: Vec<&str> = list
        .service
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    assert!(names.contains(&"roster.v1.UserService"), "{names:?}");
    assert!(names.contains(&"roster.v1.RoleService"), "{names:?}");
}

#[tokio::test]
async fn reflection_v1_describes_the_user_service() {
    let srv = Launch::new().start().await;

    let request = MessageRequest::FileContainingSymbol("roster.v1.UserService".to_owned());
    let MessageResponse::FileDescriptorResponse(files) = reflect(&srv, request).await else {
        panic!("FileContainingSymbol did not answer with file descriptors");
    };

    let files: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .expect("a FileDescriptorProto")
        })
        .collect();
    let service_file = files
        .iter()
        .find(|file| {
            file.service
                .iter()
                .any(|service| service.name() == "UserService")
        })
        .expect("a file declaring UserService");
    assert_eq!(service_file.package(), "roster.v1");
    let methods: Vec<&str> = service_file
        .service
        .iter()
        .flat_map(|s| &s.method)
        .map(|m| m.name())
        .collect();
    for method in ["UpdateUsers", "UpdateUsersPartial", "GetUser", "QueryUsers"] {
        assert!(
            methods.contains(&method),
            "{method} missing from {methods:?}"
        );
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_user_service() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let srv = Launch::new().start().await;
    let mut client = ServerReflectionClient::new(srv.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let response = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("ServerReflectionInfo (v1alpha)")
        .into_inner()
        .next()
        .await
        .expect("a reflection response")
        .expect("reflection response is not an error");

    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("ListServices did not answer with a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|service| service.name == "roster.v1.UserService")
    );
}

#[tokio::test]
async fn run_returns_ok_once_shutdown_resolves() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    let result = srv.stop().await;

    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn a_restarted_server_keeps_users_and_roles() {
    let first = Launch::new().start().await;
    let db = first.db();
    let created = first.upsert_ok([user("u1").with_name("Kept")]).await;
    first
        .roles()
        .create_role(CreateRoleRequest {
            name: "editor".to_owned(),
        })
        .await
        .expect("CreateRole");
    first.stop().await.expect("first run ends cleanly");

    let second = Launch::new().on(db).start().await;

    assert_eq!(second.get_ok("u1").await, created["u1"]);
    let roles = second
        .roles()
        .list_roles(ListRolesRequest {})
        .await
        .expect("ListRoles")
        .into_inner()
        .roles;
    assert_eq!(roles.len(), 7, "built-ins are not seeded twice: {roles:?}");
    assert!(roles.iter().any(|role| role.name == "editor"));
}

/// JSON nested past what protobuf decoding accepts (prost stops at 100 message levels: about 25
/// `$and` levels in a filter, 50 levels of custom data) is still just bad input from the caller.
#[tokio::test]
async fn requests_nested_past_the_protobuf_decoding_limit_are_invalid_argument() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    let mut filter = json!({"id": "u1"});
    for _ in 0..30 {
        filter = json!({ "$and": [filter] });
    }
    let mut custom = json!(1);
    for _ in 0..60 {
        custom = json!({ "a": custom });
    }

    let query = expect_err(srv.find(filter).await);
    let upsert = expect_err(srv.upsert([user("u2").with_custom(custom)]).await);

    assert_eq!(
        query.code(),
        Code::InvalidArgument,
        "deep filter: {query:?}"
    );
    assert_eq!(
        upsert.code(),
        Code::InvalidArgument,
        "deep custom: {upsert:?}"
    );
    assert_eq!(srv.all_ids().await, ["u1"]);
}

#[tokio::test]
async fn moderation_device_and_token_services_are_served_and_healthy() {
    let srv = Launch::new().start().await;
    let mut health = HealthClient::new(srv.channel());
    let MessageResponse::ListServicesResponse(list) =
        reflect(&srv, MessageRequest::ListServices(String::new())).await
    else {
        panic!("ListServices did not answer with a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();

    for service in [
        "roster.v1.ModerationService",
        "roster.v1.DeviceService",
        "roster.v1.TokenService",
        "roster.v1.EventService",
    ] {
        assert!(names.contains(&service), "{service} not in {names:?}");
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| panic!("health of {service}: {status:?}"));
        assert_eq!(
            status.get_ref().status(),
            ServingStatus::Serving,
            "{service}"
        );
    }
}
