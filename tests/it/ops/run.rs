//! `run` owns what it starts: once it returns, nothing it started is still running, its ports are
//! free and its database connections are closed; from shutdown every port it serves health on
//! reports NOT_SERVING before it closes; and a replica without the task worker serves calls but
//! leaves every task to a replica that has one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster::pb::{TaskStatus, WatchTaskRequest};
use roster::server::Listeners;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::*;

async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("listener address");
    (listener, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_run_returns_nothing_it_started_runs_and_its_ports_and_connections_are_released() {
    let db = Arc::new(TestDb::create().await);
    let (main, main_addr) = bind_loopback().await;
    let (health, health_addr) = bind_loopback().await;
    let (metrics, metrics_addr) = bind_loopback().await;
    let (http, _) = bind_loopback().await;
    let tasks = TaskTracker::new();
    let mut server = Launch::new()
        .on(Arc::clone(&db))
        .serve(
            Listeners {
                main,
                health: Some(health),
                metrics: Some(metrics),
                http: Some(http),
            },
            tasks.clone(),
        )
        .spawn()
        .await;
    let channel = plain_channel(main_addr);
    server.wait_serving(&channel).await;

    // Use everything `run` starts: the health-only port, /metrics, a task run by the worker
    // (followed by WatchTask), so that each has something to stop.
    assert_eq!(
        health_status(&plain_channel(health_addr)).await,
        Ok(ServingStatus::Serving),
        "the health-only port reports SERVING"
    );
    let (code, _) = http_get(metrics_addr, "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(code, 200, "/metrics answers");
    let ids = numbered_ids("owned", 3);
    create_users(&channel, &ids).await;
    let task_id = delete_users(&channel, &ids, "soft").await;
    let seen = crate::support::watch_to_end(&channel, &task_id, Duration::from_secs(30)).await;
    let last = seen.last().expect("WatchTask sends the task at least once");
    assert_completed_ok(last, &ids);
    assert!(
        !tasks.is_empty(),
        "ports, sampler, poll and workers run on the tracker while serving"
    );

    server.stop().await.expect("run returns Ok after shutdown");
    assert!(tasks.is_closed(), "run closes its tracker before returning");
    assert!(
        tasks.is_empty(),
        "{} task(s) `run` started still running after it returned",
        tasks.len()
    );
    assert_eq!(
        db.held_open().await,
        None,
        "run closes its database connections before returning"
    );
    for (port, addr) in [
        ("main", main_addr),
        ("health-only", health_addr),
        ("metrics", metrics_addr),
    ] {
        if let Err(err) = TcpListener::bind(addr).await {
            panic!("the {port} port {addr} is still taken after run returned: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_shutdown_the_main_and_health_only_ports_report_not_serving_before_they_close() {
    let db = Arc::new(TestDb::create().await);
    let (main, main_addr) = bind_loopback().await;
    let (health, health_addr) = bind_loopback().await;
    let mut server = Launch::new()
        .on(db)
        .serve(
            Listeners {
                main,
                health: Some(health),
                metrics: None,
                http: None,
            },
            TaskTracker::new(),
        )
        .spawn()
        .await;
    server.wait_serving(&plain_channel(main_addr)).await;
    let mut on_main = watch_health(main_addr).await;
    let mut on_health = watch_health(health_addr).await;
    next_status("main", &mut on_main, ServingStatus::Serving).await;
    next_status("health-only", &mut on_health, ServingStatus::Serving).await;

    server.begin_shutdown();
    next_status("main", &mut on_main, ServingStatus::NotServing).await;
    next_status("health-only", &mut on_health, ServingStatus::NotServing).await;
    // Watchers that saw NOT_SERVING go away, as a kubelet's probe does; then run returns.
    drop((on_main, on_health));
    server.stop().await.expect("run returns Ok after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_the_worker_serves_calls_and_leaves_tasks_to_one_with_it() {
    let serving_only = Launch::new().worker(false).start().await;
    let channel = serving_only.channel();
    let ids = numbered_ids("noworker", 3);
    create_users(&channel, &ids).await;
    let task_id = delete_users(&channel, &ids, "soft").await;
    let mut stream = tasks_client(&channel)
        .watch_task(WatchTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("WatchTask on the serving-only replica")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("WatchTask")
        .and_then(|r| r.task)
        .expect("WatchTask sends the task first");
    assert_eq!(status_of(&first), TaskStatus::Pending, "{}", brief(&first));
    // A local worker is woken the moment a task is enqueued and would claim it within
    // milliseconds; this watches for any change over twice its idle poll interval and expects
    // none. (A window for something that must not happen, not a wait for a state.)
    let quiet = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
    if let Ok(change) = quiet {
        panic!("the task changed on a replica without a worker: {change:?}");
    }
    // Calls are served meanwhile: a write, and a read of it.
    let more = numbered_ids("served", 1);
    create_users(&channel, &more).await;
    users_client(&channel)
        .get_user(roster::pb::GetUserRequest {
            id: more[0].clone(),
            include_deleted: false,
        })
        .await
        .expect("GetUser on the serving-only replica");

    // A replica with the worker takes the task; the serving-only one reports it finished.
    let worker = Launch::new().on(serving_only.db()).start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the task finishes within 30 s once a worker runs")
            .expect("WatchTask does not fail")
            .and_then(|r| r.task);
        match next {
            Some(task) if status_of(&task) == TaskStatus::Completed => break task,
            Some(task) => assert_ne!(status_of(&task), TaskStatus::Failed, "{}", brief(&task)),
            None => panic!("WatchTask ended before the task finished"),
        }
    };
    assert_completed_ok(&last, &ids);
    worker.stop().await.expect("the worker replica stops");
    serving_only
        .stop()
        .await
        .expect("the serving-only replica stops");
}
