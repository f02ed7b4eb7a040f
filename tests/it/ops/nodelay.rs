//! roster's PostgreSQL sockets never wait on Nagle's algorithm.
//!
//! A driver that forgets TCP_NODELAY makes every statement larger than one TCP segment wait for
//! the server's delayed ACK (up to 40 ms on Linux), which once cut roster's throughput at low
//! concurrency by four. Timing cannot catch that reliably on loopback, so this test reads the
//! option itself: it finds every socket of this process connected to the test's PostgreSQL
//! server (the in-process roster's pool among them), takes a duplicate of each through a pidfd,
//! and asks the kernel whether TCP_NODELAY is set.
use std::collections::HashMap;
use std::os::fd::AsFd;

use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_socket_of_roster_sets_tcp_nodelay() {
    if skip_unless_postgres(
        "every_postgres_socket_of_roster_sets_tcp_nodelay",
        "TCP_NODELAY is a property of PostgreSQL's TCP sockets",
    ) {
        return;
    }
    let srv = Launch::new().start().await;
    // A statement well past one loopback segment (64 KiB): the shape that stalled.
    let bio = "x".repeat(2000);
    let batch: Vec<_> = (0..100)
        .map(|i| user(&format!("nagle-{i}")).with_custom(json!({ "bio": bio })))
        .collect();
    srv.upsert(batch).await.expect("UpdateUsers of 100 users");
    srv.get_ok("nagle-7").await;

    let port = postgres_port(srv.db().url());
    let sockets = sockets_connected_to(port);
    assert!(
        !sockets.is_empty(),
        "found no socket of this process connected to PostgreSQL on port {port}"
    );
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open of this process");
    let mut checked = 0;
    let mut stalling = Vec::new();
    for (fd, inode) in sockets {
        // The fd may have been closed (and its number reused) since /proc was read: only a
        // duplicate that is still the same socket counts.
        let Ok(dup) = pidfd_getfd(pidfd.as_fd(), fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        if rustix::fs::fstat(&dup).map(|s| s.st_ino) != Ok(inode) {
            continue;
        }
        checked += 1;
        if !rustix::net::sockopt::tcp_nodelay(&dup).expect("getsockopt(TCP_NODELAY)") {
            stalling.push(fd);
        }
    }
    assert!(
        checked > 0,
        "every PostgreSQL socket closed before it was checked"
    );
    assert!(
        stalling.is_empty(),
        "{} of {checked} PostgreSQL sockets (fds {stalling:?}) leave TCP_NODELAY off: statements \
         larger than a segment wait for the server's delayed ACK",
        stalling.len()
    );
}

/// The port of a `postgres://user@host:port/db` URL (5432 when it names none).
fn postgres_port(url: &str) -> u16 {
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5432)
}

/// `(fd, socket inode)` of each established TCP socket of this process whose peer port is `port`.
fn sockets_connected_to(port: u16) -> Vec<(i32, u64)> {
    let mut peers: HashMap<u64, u16> = HashMap::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            const ESTABLISHED: &str = "01";
            let remote_port = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(remote_port), true, Ok(inode)) =
                (remote_port, *state == ESTABLISHED, inode.parse())
            {
                peers.insert(inode, remote_port);
            }
        }
    }
    let mut sockets = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd") {
        let Ok(entry) = entry else { continue };
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let inode = target
            .to_string_lossy()
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(inode) = inode
            && peers.get(&inode) == Some(&port)
        {
            sockets.push((fd, inode));
        }
    }
    sockets
}
