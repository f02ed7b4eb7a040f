//! `roster.v1.TaskService`. Tasks are produced by the lifecycle RPCs, which are not served yet;
//! until they are, every RPC here says so plainly.
use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::pb::{self, task_service_server::TaskService};

#[derive(Default)]
pub struct TaskApi;

fn not_yet() -> Status {
    Status::unimplemented("tasks are not served by this version of roster")
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    type WatchTaskStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchTaskResponse, Status>> + Send>>;

    async fn get_task(
        &self,
        _: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        Err(not_yet())
    }

    async fn watch_task(
        &self,
        _: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        Err(not_yet())
    }

    async fn list_tasks(
        &self,
        _: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Err(not_yet())
    }

    async fn cancel_task(
        &self,
        _: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::CancelTaskResponse>, Status> {
        Err(not_yet())
    }
}
