//! Durable tasks: read, list, cancel, watch.
use serde::{Deserialize, Serialize};

use super::App;
use crate::domain::access::{Caller, Scope};
use crate::domain::paging;
use crate::domain::task::{Task, TaskKind, TaskStatus};
use crate::domain::time::Micros;
use crate::error::{Error, Result};
use crate::tasks::watch::TaskStream;

const DEFAULT_LIST_LIMIT: u64 = 30;
const MAX_LIST_LIMIT: u64 = 100;

/// One page of ListTasks, newest first.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// Where a page of tasks ended: the last task's creation instant and id.
#[derive(Serialize, Deserialize)]
struct After(Micros, String);

impl App {
    pub async fn get_task(&self, caller: &Caller, task_id: &str) -> Result<Task> {
        self.admit(caller, Scope::TasksRead)?;
        self.store.get_task(task_id).await
    }

    /// ListTasks: tasks of one status and kind (each optional; `kind` empty for any), newest
    /// first.
    pub async fn list_tasks(
        &self,
        caller: &Caller,
        status: Option<TaskStatus>,
        kind: &str,
        limit: u32,
        page_token: &str,
    ) -> Result<TaskPage> {
        self.admit(caller, Scope::TasksRead)?;
        let kind = match kind {
            "" => None,
            k => Some(
                TaskKind::parse(k)
                    .ok_or_else(|| Error::invalid("kind", format!("unknown kind {k:?}")))?,
            ),
        };
        let limit = paging::page_size(limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
        let after = paging::decode::<After>(page_token)?.map(|After(at, id)| (at, id));
        let mut tasks = self
            .store
            .list_tasks(status, kind, limit + 1, after)
            .await?;
        let more = tasks.len() as u64 > limit;
        tasks.truncate(limit as usize);
        let next_page_token = match tasks.last() {
            Some(last) if more => paging::encode(&After(last.created_at, last.id.clone())),
            _ => String::new(),
        };
        Ok(TaskPage {
            tasks,
            next_page_token,
        })
    }

    /// CancelTask: the task as it is after the cancel.
    pub async fn cancel_task(&self, caller: &Caller, task_id: &str) -> Result<Task> {
        self.admit(caller, Scope::LifecycleWrite)?;
        self.store.cancel_task(task_id).await?;
        self.bus.task_changed(task_id);
        self.store.get_task(task_id).await
    }

    /// WatchTask: the task now, then each change until it ends.
    pub async fn watch_task(&self, caller: &Caller, task_id: &str) -> Result<TaskStream> {
        self.admit(caller, Scope::TasksRead)?;
        self.watcher.watch(task_id).await
    }
}
