//! Lifecycle tasks: the TaskService calls, crash recovery, and two replicas sharing the work.

mod basic;
mod crash;
mod replicas;
