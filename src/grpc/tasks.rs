//! `roster.v1.TaskService`: read, list, cancel and watch durable tasks.
use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::caller;
use super::convert::{json_to_struct, timestamp};
use crate::app::App;
use crate::domain::task::{Task, TaskStatus};
use crate::error::Error;
use crate::grpc::pb::{self, task_service_server::TaskService};

pub struct TaskApi {
    app: App,
}

impl TaskApi {
    pub fn new(app: App) -> Self {
        TaskApi { app }
    }
}

impl From<TaskStatus> for pb::TaskStatus {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Pending => pb::TaskStatus::Pending,
            TaskStatus::Running => pb::TaskStatus::Running,
            TaskStatus::Waiting => pb::TaskStatus::Waiting,
            TaskStatus::Completed => pb::TaskStatus::Completed,
            TaskStatus::Failed => pb::TaskStatus::Failed,
            TaskStatus::Canceled => pb::TaskStatus::Canceled,
        }
    }
}

/// The status a wire status names; `None` for `UNSPECIFIED`.
fn status_of(status: pb::TaskStatus) -> Option<TaskStatus> {
    TaskStatus::ALL
        .into_iter()
        .find(|&s| pb::TaskStatus::from(s) == status)
}

impl From<Task> for pb::Task {
    fn from(t: Task) -> Self {
        pb::Task::from(&t)
    }
}

impl From<&Task> for pb::Task {
    fn from(t: &Task) -> Self {
        pb::Task {
            task_id: t.id.clone(),
            kind: t.kind.as_str().to_owned(),
            status: pb::TaskStatus::from(t.status) as i32,
            created_at: Some(timestamp(t.created_at)),
            updated_at: Some(timestamp(t.updated_at)),
            started_at: t.started_at.map(timestamp),
            finished_at: t.finished_at.map(timestamp),
            progress: Some(pb::TaskProgress {
                done: t.done,
                total: t.total,
            }),
            result: Some(json_to_struct(&t.result)),
            error: t.error.as_ref().map(|e| pb::TaskError {
                r#type: e.kind.clone(),
                description: e.description.clone(),
            }),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchTaskResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TaskService for TaskApi {
    type WatchTaskStream = WatchStream;

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let caller = caller(&request);
        let task = self
            .app
            .get_task(&caller, &request.into_inner().task_id)
            .await?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(task.into()),
        }))
    }

    async fn watch_task(
        &self,
        request: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&request);
        let stream = self
            .app
            .watch_task(&caller, &request.into_inner().task_id)
            .await?;
        Ok(Response::new(Box::pin(stream.map(|task| {
            task.map(|task| pb::WatchTaskResponse {
                task: Some(task.into()),
            })
            .map_err(Status::from)
        }))))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let status = match pb::TaskStatus::try_from(req.status) {
            Ok(s) => status_of(s),
            Err(_) => {
                return Err(
                    Error::invalid("status", format!("unknown status {}", req.status)).into(),
                );
            }
        };
        let page = self
            .app
            .list_tasks(&caller, status, &req.kind, req.limit, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: page.tasks.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn cancel_task(
        &self,
        request: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::CancelTaskResponse>, Status> {
        let caller = caller(&request);
        let task = self
            .app
            .cancel_task(&caller, &request.into_inner().task_id)
            .await?;
        Ok(Response::new(pb::CancelTaskResponse {
            task: Some(task.into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_wire_status_and_back() {
        for status in TaskStatus::ALL {
            let wire = pb::TaskStatus::from(status);
            assert_ne!(wire, pb::TaskStatus::Unspecified);
            assert_eq!(status_of(wire), Some(status));
        }
        assert_eq!(status_of(pb::TaskStatus::Unspecified), None);
    }
}
