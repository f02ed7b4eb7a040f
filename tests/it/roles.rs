//! `RoleService`: built-in roles, custom roles and their limits, and roles held by users.

use roster::pb::{CreateRoleRequest, DeleteRoleRequest, ListRolesRequest, Role};
use serde_json::json;
use tonic::{Code, Status};

use crate::support::*;

const BUILTIN: [&str; 6] = [
    "user",
    "admin",
    "guest",
    "anonymous",
    "channel_member",
    "channel_moderator",
];

async fn list_roles(srv: &Server) -> Vec<Role> {
    srv.roles()
        .list_roles(ListRolesRequest {})
        .await
        .expect("ListRoles")
        .into_inner()
        .roles
}

async fn role_names(srv: &Server) -> Vec<String> {
    list_roles(srv)
        .await
        .into_iter()
        .map(|role| role.name)
        .collect()
}

async fn create_role(srv: &Server, name: &str) -> Result<Role, Status> {
    let response = srv
        .roles()
        .create_role(CreateRoleRequest {
            name: name.to_owned(),
        })
        .await?;
    Ok(response
        .into_inner()
        .role
        .expect("CreateRoleResponse without a role"))
}

async fn delete_role(srv: &Server, name: &str) -> Result<(), Status> {
    srv.roles()
        .delete_role(DeleteRoleRequest {
            name: name.to_owned(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn built_in_roles_exist_from_the_first_start() {
    let srv = Launch::new().start().await;

    let roles = list_roles(&srv).await;

    let mut names: Vec<&str> = roles.iter().map(|role| role.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = BUILTIN.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for role in &roles {
        assert!(role.builtin, "{} is built in", role.name);
        assert_eq!(
            role.channel_level,
            role.name.starts_with("channel_"),
            "{role:?}"
        );
        assert!(role.created_at.is_some(), "{role:?}");
    }
}

#[tokio::test]
async fn create_role_adds_a_custom_role_listed_after_the_built_ins_by_name() {
    let srv = Launch::new().start().await;

    let editor = create_role(&srv, "editor")
        .await
        .expect("CreateRole editor");
    create_role(&srv, "reviewer")
        .await
        .expect("CreateRole reviewer");
    create_role(&srv, "author")
        .await
        .expect("CreateRole author");

    assert_eq!(editor.name, "editor");
    assert!(!editor.builtin);
    assert!(!editor.channel_level);
    assert!(editor.created_at.is_some());
    let roles = list_roles(&srv).await;
    assert_eq!(roles.len(), 9);
    assert!(
        roles[..6].iter().all(|role| role.builtin),
        "built-in roles come first: {roles:?}"
    );
    let custom: Vec<&str> = roles[6..].iter().map(|role| role.name.as_str()).collect();
    assert_eq!(custom, ["author", "editor", "reviewer"]);
    assert_eq!(roles[7], editor, "ListRoles shows what CreateRole returned");
}

#[tokio::test]
async fn creating_an_existing_role_is_already_exists() {
    let srv = Launch::new().start().await;
    create_role(&srv, "editor")
        .await
        .expect("CreateRole editor");

    let duplicate = expect_err(create_role(&srv, "editor").await);
    let builtin = expect_err(create_role(&srv, "admin").await);

    assert_reason(&duplicate, Code::AlreadyExists, "ROLE_EXISTS");
    assert_reason(&builtin, Code::AlreadyExists, "ROLE_EXISTS");
    assert_eq!(
        role_names(&srv)
            .await
            .iter()
            .filter(|name| *name == "editor")
            .count(),
        1
    );
}

#[tokio::test]
async fn role_names_are_1_to_64_allowed_characters() {
    let srv = Launch::new().start().await;
    let longest = "r".repeat(64);

    create_role(&srv, &longest)
        .await
        .expect("a 64-character name is fine");
    create_role(&srv, "aZ09_-")
        .await
        .expect("every allowed character");
    for bad in [
        String::new(),
        "r".repeat(65),
        "a b".to_owned(),
        "a.b".to_owned(),
        "rôle".to_owned(),
    ] {
        let status = expect_err(create_role(&srv, &bad).await);
        assert_invalid(&status, "name");
    }

    let names = role_names(&srv).await;
    assert_eq!(
        names.len(),
        8,
        "only the two good roles were added: {names:?}"
    );
}

#[tokio::test]
async fn built_in_roles_cannot_be_deleted() {
    let srv = Launch::new().start().await;

    for name in BUILTIN {
        let status = expect_err(delete_role(&srv, name).await);
        assert_reason(&status, Code::FailedPrecondition, "ROLE_BUILTIN");
    }

    assert_eq!(list_roles(&srv).await.len(), 6);
}

#[tokio::test]
async fn deleting_an_unknown_role_is_not_found() {
    let srv = Launch::new().start().await;

    let status = expect_err(delete_role(&srv, "nope").await);

    assert_reason(&status, Code::NotFound, "ROLE_NOT_FOUND");
}

#[tokio::test]
async fn a_role_held_by_a_user_cannot_be_deleted_until_the_user_is_reassigned() {
    let srv = Launch::new().start().await;
    create_role(&srv, "editor").await.expect("CreateRole");
    srv.upsert_ok([user("u1").with_role("editor")]).await;

    let status = expect_err(delete_role(&srv, "editor").await);
    assert_reason(&status, Code::FailedPrecondition, "ROLE_IN_USE");
    assert!(role_names(&srv).await.contains(&"editor".to_owned()));
    assert_eq!(srv.get_ok("u1").await.role, "editor");

    srv.upsert_ok([user("u1").with_role("user")]).await;
    delete_role(&srv, "editor")
        .await
        .expect("DeleteRole once nobody holds it");

    assert!(!role_names(&srv).await.contains(&"editor".to_owned()));
    let status = expect_err(srv.upsert([user("u2").with_role("editor")]).await);
    assert_invalid(&status, "users[u2].role");
}

#[tokio::test]
async fn a_role_held_as_a_team_role_cannot_be_deleted() {
    let srv = Launch::new().start().await;
    create_role(&srv, "captain").await.expect("CreateRole");
    srv.upsert_ok([user("u1")
        .with_teams(&["red"])
        .with_team_role("red", "captain")])
        .await;

    let status = expect_err(delete_role(&srv, "captain").await);
    assert_reason(&status, Code::FailedPrecondition, "ROLE_IN_USE");

    srv.update_partial_ok(partial("u1", json!({}), &["teams_role"]))
        .await;
    delete_role(&srv, "captain")
        .await
        .expect("DeleteRole once no team role names it");
}

#[tokio::test]
async fn at_most_25_custom_roles() {
    let srv = Launch::new().start().await;
    for i in 0..25 {
        create_role(&srv, &format!("custom{i:02}"))
            .await
            .expect("one of the first 25");
    }

    let status = expect_err(create_role(&srv, "custom25").await);
    assert_reason(&status, Code::ResourceExhausted, "LIMIT_EXCEEDED");
    assert_eq!(list_roles(&srv).await.len(), 6 + 25);

    delete_role(&srv, "custom00").await.expect("DeleteRole");
    create_role(&srv, "custom25")
        .await
        .expect("room for one again");
}

#[tokio::test]
async fn a_user_may_hold_a_custom_role() {
    let srv = Launch::new().start().await;
    create_role(&srv, "editor").await.expect("CreateRole");

    let users = srv
        .upsert_ok([
            user("u1").with_role("editor"),
            user("u2")
                .with_teams(&["red"])
                .with_team_role("red", "editor"),
        ])
        .await;

    assert_eq!(users["u1"].role, "editor");
    assert_eq!(srv.get_ok("u1").await.role, "editor");
    assert_eq!(
        srv.get_ok("u2")
            .await
            .teams_role
            .get("red")
            .map(String::as_str),
        Some("editor")
    );
    let u2 = srv
        .update_partial_ok(partial("u2", json!({"role": "editor"}), &[]))
        .await;
    assert_eq!(u2.role, "editor");
}

#[tokio::test]
async fn a_channel_level_role_is_not_a_global_role() {
    let srv = Launch::new().start().await;

    for role in ["channel_member", "channel_moderator"] {
        let status = expect_err(srv.upsert([user("u1").with_role(role), user("u2")]).await);
        assert_invalid(&status, "users[u1].role");
    }

    assert!(srv.all_ids().await.is_empty(), "nothing was written");
}

/// 15 concurrent creates when 5 roles fit: exactly 5 succeed. Repeated, since a race may hide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_custom_role_limit_holds_under_concurrent_creates() {
    let srv = Launch::new().start().await;
    for i in 0..20 {
        create_role(&srv, &format!("early{i:02}"))
            .await
            .expect("one of the first 20");
    }

    for round in 0..5 {
        let tasks: Vec<_> = (0..15)
            .map(|i| {
                let mut roles = srv.roles();
                let name = format!("late{round}x{i:02}");
                tokio::spawn(async move {
                    roles
                        .create_role(CreateRoleRequest { name: name.clone() })
                        .await
                        .map(|_| name)
                })
            })
            .collect();
        let mut created = Vec::new();
        for task in tasks {
            match task.await.expect("task panicked") {
                Ok(name) => created.push(name),
                Err(status) => assert_reason(&status, Code::ResourceExhausted, "LIMIT_EXCEEDED"),
            }
        }

        assert_eq!(
            created.len(),
            5,
            "round {round}: exactly the 5 that fit were created"
        );
        assert_eq!(list_roles(&srv).await.len(), 6 + 25, "round {round}");
        for name in created {
            delete_role(&srv, &name).await.expect("DeleteRole");
        }
    }
}

/// A role deleted while a user is being given it: either the delete sees the user (ROLE_IN_USE)
/// or the write sees the role gone (INVALID_ARGUMENT); never both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_role_while_it_is_assigned_never_leaves_a_user_holding_a_missing_role() {
    let srv = Launch::new().start().await;

    for round in 0..30 {
        let role = format!("racer{round:02}");
        let id = format!("u{round:02}");
        create_role(&srv, &role).await.expect("CreateRole");
        let assign = srv.upsert([user(&id).with_role(&role)]);
        let delete = delete_role(&srv, &role);
        let (assigned, deleted) = tokio::join!(assign, delete);

        match (&assigned, &deleted) {
            (Ok(_), Err(status)) => assert_reason(status, Code::FailedPrecondition, "ROLE_IN_USE"),
            (Err(status), Ok(())) => assert_invalid(status, &format!("users[{id}].role")),
            _ => panic!(
                "round {round}: assigning {role} gave {:?} and deleting it gave {:?}",
                assigned.as_ref().map(|_| "OK"),
                deleted.as_ref().map(|_| "OK"),
            ),
        }
        let roles = role_names(&srv).await;
        for held in srv.all_users().await {
            assert!(
                roles.contains(&held.role),
                "{} holds {}, which no longer exists",
                held.id,
                held.role
            );
        }
        // Free the role's slot for the next round.
        if assigned.is_ok() {
            srv.upsert_ok([user(&id)]).await;
            delete_role(&srv, &role)
                .await
                .expect("DeleteRole once unassigned");
        }
    }
}

#[tokio::test]
async fn a_role_held_by_a_soft_deleted_user_stays_until_the_user_is_pruned() {
    let srv = Launch::new().start().await;
    create_role(&srv, "wizard").await.expect("CreateRole");
    create_role(&srv, "captain").await.expect("CreateRole");
    srv.upsert_ok([
        user("r2").with_role("wizard"),
        user("r3")
            .with_teams(&["red"])
            .with_team_role("red", "captain"),
    ])
    .await;
    let delete = |mode: &'static str, id: &'static str| {
        let mut users = srv.users();
        async move {
            users
                .delete_users(roster::pb::DeleteUsersRequest {
                    user_ids: vec![id.to_owned()],
                    user: mode.to_owned(),
                    ..Default::default()
                })
                .await
                .expect("DeleteUsers")
                .into_inner()
                .task_id
        }
    };
    let soft = delete("soft", "r2").await;
    srv.wait_for_task(&soft).await;
    let soft = delete("soft", "r3").await;
    srv.wait_for_task(&soft).await;

    for role in ["wizard", "captain"] {
        let status = expect_err(delete_role(&srv, role).await);
        assert_reason(&status, Code::FailedPrecondition, "ROLE_IN_USE");
    }
    assert!(role_names(&srv).await.contains(&"wizard".to_owned()));
    let restored = srv
        .users()
        .restore_users(roster::pb::RestoreUsersRequest {
            user_ids: vec!["r2".to_owned()],
            ..Default::default()
        })
        .await
        .expect("RestoreUsers")
        .into_inner()
        .task_id;
    srv.wait_for_task(&restored).await;
    let r2 = srv.get_ok("r2").await;
    assert_eq!(r2.role, "wizard");
    assert!(role_names(&srv).await.contains(&r2.role), "its role exists");
    srv.update_partial_ok(partial("r2", json!({"name": "Back"}), &[]))
        .await;

    // Once no user can come back with it, the role may go.
    let pruned = delete("pruning", "r3").await;
    srv.wait_for_task(&pruned).await;
    delete_role(&srv, "captain")
        .await
        .expect("DeleteRole of a role only a pruned user held");
    srv.upsert_ok([user("r2")]).await;
    delete_role(&srv, "wizard")
        .await
        .expect("DeleteRole once r2 was reassigned");
}
