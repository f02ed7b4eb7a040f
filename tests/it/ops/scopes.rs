//! Per-caller permissions: a server token's `scope` claim (space-separated; absent means all)
//! limits what its caller may call. Every RPC is called with a token holding every scope but the
//! one it needs: each answers PERMISSION_DENIED naming that scope, and nothing is written. The same
//! call with a token holding only that scope gets past the check.

use roster::pb;
use roster::pb::device_service_client::DeviceServiceClient;
use roster::pb::event_service_client::EventServiceClient;
use roster::pb::moderation_service_client::ModerationServiceClient;
use roster::pb::role_service_client::RoleServiceClient;
use roster::pb::task_service_client::TaskServiceClient;
use roster::pb::token_service_client::TokenServiceClient;
use roster::pb::user_service_client::UserServiceClient;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::support::*;

const SECRET: &str = "scopes-secret";

const SCOPES: [&str; 8] = [
    "users:read",
    "users:write",
    "lifecycle:write",
    "tasks:read",
    "moderation:write",
    "tokens:write",
    "events:read",
    "roles:write",
];

/// A token whose scope claim holds `scopes` (space-separated).
fn scoped(scopes: &[&str]) -> String {
    token(
        SECRET,
        &json!({"service": "scoped", "scope": scopes.join(" ")}),
    )
}

/// A token with every scope but `missing`.
fn all_but(missing: &str) -> String {
    let rest: Vec<&str> = SCOPES.iter().copied().filter(|s| *s != missing).collect();
    scoped(&rest)
}

/// One call of every RPC, made with `token`; what it answered (Ok for any success).
async fn call(channel: &Channel, rpc: &str, token: &str, task_id: &str) -> Result<(), Status> {
    let mut users = UserServiceClient::new(channel.clone());
    let mut tasks = TaskServiceClient::new(channel.clone());
    let mut roles = RoleServiceClient::new(channel.clone());
    let mut moderation = ModerationServiceClient::new(channel.clone());
    let mut devices = DeviceServiceClient::new(channel.clone());
    let mut tokens = TokenServiceClient::new(channel.clone());
    let mut events = EventServiceClient::new(channel.clone());
    let ids = || vec!["u1".to_owned()];
    match rpc {
        "UpdateUsers" => users
            .update_users(bearer(
                pb::UpdateUsersRequest {
                    users: [("u1".to_owned(), user("u1").with_name("Changed"))].into(),
                },
                token,
            ))
            .await
            .map(drop),
        "UpdateUsersPartial" => users
            .update_users_partial(bearer(
                pb::UpdateUsersPartialRequest {
                    users: vec![pb::UpdateUserPartialRequest {
                        id: "u1".into(),
                        unset: vec!["name".into()],
                        ..Default::default()
                    }],
                },
                token,
            ))
            .await
            .map(drop),
        "GetUser" => users
            .get_user(bearer(
                pb::GetUserRequest {
                    id: "u1".into(),
                    include_deleted: false,
                },
                token,
            ))
            .await
            .map(drop),
        "QueryUsers" => users
            .query_users(bearer(pb::QueryUsersRequest::default(), token))
            .await
            .map(drop),
        "DeactivateUser" => users
            .deactivate_user(bearer(
                pb::DeactivateUserRequest {
                    user_id: "u1".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "DeactivateUsers" => users
            .deactivate_users(bearer(
                pb::DeactivateUsersRequest {
                    user_ids: ids(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "ReactivateUser" => users
            .reactivate_user(bearer(
                pb::ReactivateUserRequest {
                    user_id: "u1".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "ReactivateUsers" => users
            .reactivate_users(bearer(
                pb::ReactivateUsersRequest {
                    user_ids: ids(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "DeleteUsers" => users
            .delete_users(bearer(
                pb::DeleteUsersRequest {
                    user_ids: ids(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "RestoreUsers" => users
            .restore_users(bearer(
                pb::RestoreUsersRequest {
                    user_ids: ids(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "GetTask" => tasks
            .get_task(bearer(
                pb::GetTaskRequest {
                    task_id: task_id.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "WatchTask" => tasks
            .watch_task(bearer(
                pb::WatchTaskRequest {
                    task_id: task_id.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "ListTasks" => tasks
            .list_tasks(bearer(pb::ListTasksRequest::default(), token))
            .await
            .map(drop),
        "CancelTask" => tasks
            .cancel_task(bearer(
                pb::CancelTaskRequest {
                    task_id: task_id.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "CreateRole" => roles
            .create_role(bearer(
                pb::CreateRoleRequest {
                    name: "editor".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "ListRoles" => roles
            .list_roles(bearer(pb::ListRolesRequest::default(), token))
            .await
            .map(drop),
        "DeleteRole" => roles
            .delete_role(bearer(
                pb::DeleteRoleRequest {
                    name: "moderator".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "BanUser" => moderation
            .ban_user(bearer(
                pb::BanUserRequest {
                    target_user_id: "u1".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "UnbanUser" => moderation
            .unban_user(bearer(
                pb::UnbanUserRequest {
                    target_user_id: "u2".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "QueryBannedUsers" => moderation
            .query_banned_users(bearer(pb::QueryBannedUsersRequest::default(), token))
            .await
            .map(drop),
        "BlockUsers" => moderation
            .block_users(bearer(
                pb::BlockUsersRequest {
                    user_id: "u1".into(),
                    blocked_user_id: "u3".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "UnblockUsers" => moderation
            .unblock_users(bearer(
                pb::UnblockUsersRequest {
                    user_id: "u1".into(),
                    blocked_user_id: "u2".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "GetBlockedUsers" => moderation
            .get_blocked_users(bearer(
                pb::GetBlockedUsersRequest {
                    user_id: "u1".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "CreateDevice" => devices
            .create_device(bearer(
                pb::CreateDeviceRequest {
                    user_id: "u1".into(),
                    id: "device-2".into(),
                    push_provider: "firebase".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "ListDevices" => devices
            .list_devices(bearer(
                pb::ListDevicesRequest {
                    user_id: "u1".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "DeleteDevice" => devices
            .delete_device(bearer(
                pb::DeleteDeviceRequest {
                    user_id: "u1".into(),
                    id: "device-1".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "CreateUserToken" => tokens
            .create_user_token(bearer(
                pb::CreateUserTokenRequest {
                    user_id: "u1".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "VerifyUserToken" => tokens
            .verify_user_token(bearer(
                pb::VerifyUserTokenRequest {
                    token: "not-a-token".into(),
                },
                token,
            ))
            .await
            .map(drop),
        "RevokeUserTokens" => tokens
            .revoke_user_tokens(bearer(
                pb::RevokeUserTokensRequest {
                    user_ids: ids(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "WatchUserEvents" => events
            .watch_user_events(bearer(pb::WatchUserEventsRequest::default(), token))
            .await
            .map(drop),
        other => panic!("no call written for {other}"),
    }
}

/// Every RPC of roster.v1 and the scope it needs (the README's table).
const NEEDS: [(&str, &str); 30] = [
    ("UpdateUsers", "users:write"),
    ("UpdateUsersPartial", "users:write"),
    ("GetUser", "users:read"),
    ("QueryUsers", "users:read"),
    ("DeactivateUser", "lifecycle:write"),
    ("DeactivateUsers", "lifecycle:write"),
    ("ReactivateUser", "lifecycle:write"),
    ("ReactivateUsers", "lifecycle:write"),
    ("DeleteUsers", "lifecycle:write"),
    ("RestoreUsers", "lifecycle:write"),
    ("GetTask", "tasks:read"),
    ("WatchTask", "tasks:read"),
    ("ListTasks", "tasks:read"),
    ("CancelTask", "lifecycle:write"),
    ("CreateRole", "roles:write"),
    ("ListRoles", "users:read"),
    ("DeleteRole", "roles:write"),
    ("BanUser", "moderation:write"),
    ("UnbanUser", "moderation:write"),
    ("QueryBannedUsers", "users:read"),
    ("BlockUsers", "moderation:write"),
    ("UnblockUsers", "moderation:write"),
    ("GetBlockedUsers", "users:read"),
    ("CreateDevice", "users:write"),
    ("ListDevices", "users:read"),
    ("DeleteDevice", "users:write"),
    ("CreateUserToken", "tokens:write"),
    ("VerifyUserToken", "users:read"),
    ("RevokeUserTokens", "tokens:write"),
    ("WatchUserEvents", "events:read"),
];

/// What a caller with every scope sees of roster's state: users, roles, tasks, devices, blocks,
/// bans. Equal before and after the refused calls means they wrote nothing.
async fn state(channel: &Channel, full: &str) -> String {
    let mut users = UserServiceClient::new(channel.clone());
    let mut tasks = TaskServiceClient::new(channel.clone());
    let mut roles = RoleServiceClient::new(channel.clone());
    let mut moderation = ModerationServiceClient::new(channel.clone());
    let mut devices = DeviceServiceClient::new(channel.clone());
    let all_users = users
        .query_users(bearer(
            pb::QueryUsersRequest {
                include_deactivated_users: true,
                ..Default::default()
            },
            full,
        ))
        .await
        .expect("query")
        .into_inner();
    let listed_tasks = tasks
        .list_tasks(bearer(pb::ListTasksRequest::default(), full))
        .await
        .expect("tasks")
        .into_inner();
    let listed_roles = roles
        .list_roles(bearer(pb::ListRolesRequest::default(), full))
        .await
        .expect("roles")
        .into_inner();
    let bans = moderation
        .query_banned_users(bearer(pb::QueryBannedUsersRequest::default(), full))
        .await
        .expect("bans")
        .into_inner();
    let blocks = moderation
        .get_blocked_users(bearer(
            pb::GetBlockedUsersRequest {
                user_id: "u1".into(),
            },
            full,
        ))
        .await
        .expect("blocks")
        .into_inner();
    let listed_devices = devices
        .list_devices(bearer(
            pb::ListDevicesRequest {
                user_id: "u1".into(),
            },
            full,
        ))
        .await
        .expect("devices")
        .into_inner();
    let users: Vec<_> = all_users
        .users
        .iter()
        .map(|u| {
            (
                &u.id,
                &u.name,
                &u.role,
                &u.updated_at,
                &u.deactivated_at,
                &u.deleted_at,
                u.banned,
                &u.revoke_tokens_issued_before,
            )
        })
        .collect();
    let tasks: Vec<_> = listed_tasks
        .tasks
        .iter()
        .map(|t| (&t.task_id, t.status))
        .collect();
    format!(
        "users {users:?}\ntasks {tasks:?}\nroles {:?}\nbans {}\nblocks {}\ndevices {}",
        listed_roles
            .roles
            .iter()
            .map(|r| &r.name)
            .collect::<Vec<_>>(),
        bans.bans.len(),
        blocks.blocks.len(),
        listed_devices.devices.len(),
    )
}

#[tokio::test]
async fn every_rpc_needs_its_scope_and_a_refused_call_writes_nothing() {
    let server = Launch::new().api_secrets(&[SECRET]).start().await;
    let channel = server.channel();
    // A token without `scope` may do everything, as before scopes existed.
    let full = token(SECRET, &json!({"service": "admin"}));

    // Something for every call to act on: users, a role, a device, a block, a ban, a task.
    let mut users = UserServiceClient::new(channel.clone());
    users
        .update_users(bearer(
            pb::UpdateUsersRequest {
                users: ["u1", "u2", "u3"]
                    .map(|id| (id.to_owned(), user(id).with_name("Original")))
                    .into(),
            },
            &full,
        ))
        .await
        .expect("create users");
    RoleServiceClient::new(channel.clone())
        .create_role(bearer(
            pb::CreateRoleRequest {
                name: "moderator".into(),
            },
            &full,
        ))
        .await
        .expect("role");
    DeviceServiceClient::new(channel.clone())
        .create_device(bearer(
            pb::CreateDeviceRequest {
                user_id: "u1".into(),
                id: "device-1".into(),
                push_provider: "firebase".into(),
                ..Default::default()
            },
            &full,
        ))
        .await
        .expect("device");
    let mut moderation = ModerationServiceClient::new(channel.clone());
    moderation
        .block_users(bearer(
            pb::BlockUsersRequest {
                user_id: "u1".into(),
                blocked_user_id: "u2".into(),
            },
            &full,
        ))
        .await
        .expect("block");
    moderation
        .ban_user(bearer(
            pb::BanUserRequest {
                target_user_id: "u2".into(),
                ..Default::default()
            },
            &full,
        ))
        .await
        .expect("ban");
    let task_id = users
        .deactivate_users(bearer(
            pb::DeactivateUsersRequest {
                user_ids: vec!["u3".into()],
                ..Default::default()
            },
            &full,
        ))
        .await
        .expect("a task")
        .into_inner()
        .task_id;
    // Let it finish, so that the state compared below does not move on its own.
    let mut tasks = TaskServiceClient::new(channel.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let task = tasks
            .get_task(bearer(
                pb::GetTaskRequest {
                    task_id: task_id.clone(),
                },
                &full,
            ))
            .await
            .expect("task")
            .into_inner()
            .task
            .expect("task");
        if task.status == pb::TaskStatus::Completed as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the task completes");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let before = state(&channel, &full).await;
    for (rpc, scope) in NEEDS {
        let refused = call(&channel, rpc, &all_but(scope), &task_id)
            .await
            .expect_err(rpc);
        assert_eq!(refused.code(), Code::PermissionDenied, "{rpc}: {refused:?}");
        let info = refused
            .get_details_error_info()
            .unwrap_or_else(|| panic!("{rpc}: ErrorInfo"));
        assert_eq!(info.reason, "MISSING_SCOPE", "{rpc}");
        assert_eq!(
            info.metadata.get("scope").map(String::as_str),
            Some(scope),
            "{rpc} names the scope it needs"
        );
        assert!(
            refused.message().contains(scope),
            "{rpc}: {}",
            refused.message()
        );
    }
    assert_eq!(
        state(&channel, &full).await,
        before,
        "refused calls wrote nothing"
    );

    // With exactly the scope it needs, each call gets past the check (it may still fail for
    // its own reasons, such as a token that does not verify).
    for (rpc, scope) in NEEDS {
        if let Err(status) = call(&channel, rpc, &scoped(&[scope]), &task_id).await {
            assert_ne!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        }
    }
}
