//! `DeviceService`: registering, the 25-device cap, removal, and users carrying their devices.

use roster::pb::{CreateDeviceRequest, DeleteDeviceRequest, Device, ListDevicesRequest};
use serde_json::json;
use tonic::{Code, Status};

use crate::support::*;

fn device(user_id: &str, id: &str) -> CreateDeviceRequest {
    CreateDeviceRequest {
        user_id: user_id.to_owned(),
        id: id.to_owned(),
        push_provider: "firebase".to_owned(),
        push_provider_name: Some("prod".to_owned()),
        voip: false,
    }
}

async fn create(srv: &Server, request: CreateDeviceRequest) -> Result<Device, Status> {
    let response = srv.devices().create_device(request).await?.into_inner();
    Ok(response
        .device
        .expect("CreateDeviceResponse without a device"))
}

async fn list(srv: &Server, user_id: &str) -> Vec<Device> {
    srv.devices()
        .list_devices(ListDevicesRequest {
            user_id: user_id.to_owned(),
        })
        .await
        .expect("ListDevices")
        .into_inner()
        .devices
}

async fn delete(srv: &Server, user_id: &str, id: &str) -> Result<(), Status> {
    srv.devices()
        .delete_device(DeleteDeviceRequest {
            user_id: user_id.to_owned(),
            id: id.to_owned(),
        })
        .await
        .map(|_| ())
}

fn device_ids(devices: &[Device]) -> Vec<String> {
    devices.iter().map(|d| d.id.clone()).collect()
}

#[tokio::test]
async fn a_created_device_is_listed_and_carried_by_the_user_everywhere() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    let created = create(
        &srv,
        CreateDeviceRequest {
            push_provider: "apn".to_owned(),
            voip: true,
            ..device("u1", "token:abc/1")
        },
    )
    .await
    .expect("CreateDevice");

    assert_eq!(created.id, "token:abc/1");
    assert_eq!(created.push_provider, "apn");
    assert_eq!(created.push_provider_name.as_deref(), Some("prod"));
    assert!(created.voip);
    assert!(created.created_at.is_some());
    assert_eq!(list(&srv, "u1").await, std::slice::from_ref(&created));
    assert_eq!(
        srv.get_ok("u1").await.devices,
        std::slice::from_ref(&created)
    );
    let queried = srv
        .query(filter_query(json!({"id": "u1"})))
        .await
        .expect("QueryUsers");
    assert_eq!(queried.users[0].devices, std::slice::from_ref(&created));
    let updated = srv
        .update_partial_ok(partial("u1", json!({"name": "One"}), &[]))
        .await;
    assert_eq!(updated.devices, std::slice::from_ref(&created));
    let events = srv.events(&["user.device_added"], 1).await;
    assert_eq!(
        events[0].user.as_ref().expect("snapshot").devices,
        [created]
    );
}

#[tokio::test]
async fn creating_an_existing_device_is_a_no_op() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    let first = create(&srv, device("u1", "d1"))
        .await
        .expect("CreateDevice");
    let before = srv.get_ok("u1").await;

    let again = create(
        &srv,
        CreateDeviceRequest {
            push_provider: "huawei".to_owned(),
            ..device("u1", "d1")
        },
    )
    .await
    .expect("CreateDevice again");

    assert_eq!(again, first, "the existing device, unchanged");
    assert_eq!(srv.get_ok("u1").await, before, "the user did not change");
    delete(&srv, "u1", "d1").await.expect("DeleteDevice");
    let events = srv
        .events(&["user.device_added", "user.device_removed"], 2)
        .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["user.device_added", "user.device_removed"]);
}

#[tokio::test]
async fn the_26th_device_replaces_the_oldest() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;
    for i in 0..25 {
        create(&srv, device("u1", &format!("d{i:02}")))
            .await
            .expect("CreateDevice");
    }
    assert_eq!(list(&srv, "u1").await.len(), 25);

    create(&srv, device("u1", "d25")).await.expect("the 26th");

    let ids = device_ids(&list(&srv, "u1").await);
    let expected: Vec<String> = (1..26).map(|i| format!("d{i:02}")).collect();
    assert_eq!(ids, expected, "d00, the oldest, made room; oldest first");
    assert_eq!(device_ids(&srv.get_ok("u1").await.devices), expected);
    let events = srv
        .events(&["user.device_added", "user.device_removed"], 27)
        .await;
    let removed = &events[25];
    assert_eq!(removed.kind, "user.device_removed");
    assert_eq!(removed.user.as_ref().expect("snapshot").devices.len(), 24);
    assert_eq!(events[26].kind, "user.device_added");
}

#[tokio::test]
async fn delete_removes_one_device() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1"), user("u2")]).await;
    create(&srv, device("u1", "d1"))
        .await
        .expect("CreateDevice");
    create(&srv, device("u1", "d2"))
        .await
        .expect("CreateDevice");
    create(&srv, device("u2", "d1"))
        .await
        .expect("same id, other user");

    delete(&srv, "u1", "d1").await.expect("DeleteDevice");

    assert_eq!(device_ids(&list(&srv, "u1").await), ["d2"]);
    assert_eq!(device_ids(&list(&srv, "u2").await), ["d1"], "per user");
    let missing = expect_err(delete(&srv, "u1", "d1").await);
    assert_reason(&missing, Code::NotFound, "DEVICE_NOT_FOUND");
}

#[tokio::test]
async fn devices_are_checked() {
    let srv = Launch::new().start().await;
    srv.upsert_ok([user("u1")]).await;

    let provider = expect_err(
        create(
            &srv,
            CreateDeviceRequest {
                push_provider: "carrier-pigeon".to_owned(),
                ..device("u1", "d1")
            },
        )
        .await,
    );
    assert_invalid(&provider, "push_provider");
    assert_invalid(&expect_err(create(&srv, device("u1", "")).await), "id");
    assert_invalid(
        &expect_err(create(&srv, device("u1", &"d".repeat(256))).await),
        "id",
    );
    create(&srv, device("u1", &"d".repeat(255)))
        .await
        .expect("255 characters are fine");
    let nobody = expect_err(create(&srv, device("nobody", "d1")).await);
    assert_reason(&nobody, Code::NotFound, "USER_NOT_FOUND");
    let listing = expect_err(
        srv.devices()
            .list_devices(ListDevicesRequest {
                user_id: "nobody".to_owned(),
            })
            .await,
    );
    assert_reason(&listing, Code::NotFound, "USER_NOT_FOUND");
    assert_eq!(list(&srv, "u1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_leave_more_than_25_devices() {
    let srv = std::sync::Arc::new(Launch::new().start().await);
    srv.upsert_ok([user("u1")]).await;

    let creates: Vec<_> = (0..30)
        .map(|i| {
            let srv = std::sync::Arc::clone(&srv);
            tokio::spawn(async move { create(&srv, device("u1", &format!("d{i}"))).await })
        })
        .collect();
    for create in creates {
        create.await.expect("task").expect("CreateDevice");
    }

    assert_eq!(list(&srv, "u1").await.len(), 25);
}
