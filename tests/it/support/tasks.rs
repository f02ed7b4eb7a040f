//! Following lifecycle tasks over a `Channel` (of an in-process server or a child process):
//! fetching, waiting for a state, watching to the end, and what a finished task must say.

use std::collections::BTreeSet;
use std::time::Duration;

use roster::pb::{GetTaskRequest, ListTasksRequest, Task, TaskStatus, WatchTaskRequest};
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::Channel;

use super::proto::{POLL, json_from_struct, tasks_client};

/// Default bound on a task reaching a state a test waits for.
pub const TASK_DEADLINE: Duration = Duration::from_secs(30);

pub async fn fetch_task(channel: &Channel, task_id: &str) -> Task {
    try_fetch_task(channel, task_id)
        .await
        .unwrap_or_else(|status| panic!("GetTask {task_id}: {status:?}"))
}

pub async fn try_fetch_task(channel: &Channel, task_id: &str) -> Result<Task, Status> {
    let response = tasks_client(channel)
        .get_task(GetTaskRequest {
            task_id: task_id.to_owned(),
        })
        .await?;
    Ok(response.into_inner().task.expect("GetTask without a task"))
}

pub fn status_of(task: &Task) -> TaskStatus {
    TaskStatus::try_from(task.status).unwrap_or(TaskStatus::Unspecified)
}

pub fn is_terminal(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Canceled
    )
}

/// `(done, total)`; a task without progress is a server bug.
pub fn progress_of(task: &Task) -> (u32, u32) {
    let progress = task
        .progress
        .as_ref()
        .unwrap_or_else(|| panic!("task without progress: {task:?}"));
    (progress.done, progress.total)
}

/// The per-user result as JSON (`{}` when absent).
pub fn result_of(task: &Task) -> serde_json::Map<String, Json> {
    match task.result.as_ref().map(json_from_struct) {
        Some(Json::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Short description for assertion messages (without the result).
pub fn brief(task: &Task) -> String {
    let (done, total) = task.progress.as_ref().map_or((0, 0), |p| (p.done, p.total));
    format!(
        "task {} {} {:?} {done}/{total} error={:?}",
        task.task_id,
        task.kind,
        status_of(task),
        task.error
    )
}

/// Polls GetTask until `ready` holds; panics with the last state after `within`.
pub async fn wait_task(
    channel: &Channel,
    task_id: &str,
    within: Duration,
    what: &str,
    ready: impl Fn(&Task) -> bool,
) -> Task {
    let deadline = Instant::now() + within;
    loop {
        let task = fetch_task(channel, task_id).await;
        if ready(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {what}; last: {}",
            brief(&task)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the task is terminal.
pub async fn wait_finished(channel: &Channel, task_id: &str) -> Task {
    wait_task(channel, task_id, TASK_DEADLINE, "a terminal status", |t| {
        is_terminal(status_of(t))
    })
    .await
}

/// Waits until the task is terminal, and asserts it `completed` with an ok result per id.
pub async fn wait_completed_ok(channel: &Channel, task_id: &str, ids: &[String]) -> Task {
    let task = wait_finished(channel, task_id).await;
    assert_completed_ok(&task, ids);
    task
}

/// `completed`, progress `n/n`, and exactly one `{"status": "ok"}` entry per id, nothing else.
#[track_caller]
pub fn assert_completed_ok(task: &Task, ids: &[String]) {
    assert_eq!(
        status_of(task),
        TaskStatus::Completed,
        "{} should be completed",
        brief(task)
    );
    let n = u32::try_from(ids.len()).expect("few ids");
    assert_eq!(progress_of(task), (n, n), "progress of {}", brief(task));
    assert_eq!(task.error, None, "error of a completed task");
    assert!(task.finished_at.is_some(), "finished_at of {}", brief(task));
    assert_results_ok(task, ids);
}

/// The result holds exactly `ids`, each `{"status": "ok"}`.
#[track_caller]
pub fn assert_results_ok(task: &Task, ids: &[String]) {
    let result = result_of(task);
    let keys: BTreeSet<&str> = result.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        keys.len(),
        result.len(),
        "result keys of {} are unique",
        brief(task)
    );
    if keys != expected {
        let missing: Vec<&&str> = expected.difference(&keys).take(10).collect();
        let extra: Vec<&&str> = keys.difference(&expected).take(10).collect();
        panic!(
            "result of {} names {} users, expected {}; missing (first 10) {missing:?}, \
             unexpected {extra:?}",
            brief(task),
            keys.len(),
            expected.len()
        );
    }
    for (id, outcome) in &result {
        assert_eq!(
            outcome,
            &json!({"status": "ok"}),
            "outcome of {id} in {}",
            brief(task)
        );
    }
}

/// Every task ListTasks returns for the filter, walking pages of `limit`.
pub async fn list_all_tasks(
    channel: &Channel,
    status: TaskStatus,
    kind: &str,
    limit: u32,
) -> Vec<Task> {
    let mut client = tasks_client(channel);
    let mut tasks = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tasks(ListTasksRequest {
                status: status as i32,
                kind: kind.to_owned(),
                limit,
                page_token: page_token.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("ListTasks {status:?} {kind:?}: {s:?}"))
            .into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return tasks;
        }
        assert!(tasks.len() <= 10_000, "ListTasks page walk does not end");
        page_token = page.next_page_token;
    }
}

/// Collects a WatchTask stream until it ends; panics if it does not end within `within` or
/// ends with an error.
pub async fn watch_to_end(channel: &Channel, task_id: &str, within: Duration) -> Vec<Task> {
    let mut stream = tasks_client(channel)
        .watch_task(WatchTaskRequest {
            task_id: task_id.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("WatchTask {task_id}: {status:?}"))
        .into_inner();
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "WatchTask {task_id} did not end within {within:?}; last: {:?}",
                    seen.last().map(brief)
                )
            });
        match next {
            Ok(Some(response)) => seen.push(response.task.expect("WatchTaskResponse without task")),
            Ok(None) => return seen,
            Err(status) => panic!(
                "WatchTask {task_id} ended with {status:?} after {:?}",
                seen.last().map(brief)
            ),
        }
    }
}
