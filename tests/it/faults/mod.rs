//! Faults and load: bad and garbage input, concurrent writers, a database outage, a process
//! crash under load, and sustained mixed load.

mod bad_input;
mod concurrency;
mod crash;
mod garbage_frames;
mod load_sustained;
mod outage;
mod writers;
