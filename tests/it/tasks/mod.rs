//! Lifecycle tasks: the TaskService calls, crash recovery, and two or three replicas sharing the
//! work.

mod basic;
mod crash;
mod replicas;
mod three_replicas;
