//! A counting PostgreSQL proxy: forwards a client's connections to the server unchanged and
//! counts the round trips they make, by reading the frontend protocol's message types.
//!
//! A round trip ends with the client's `Sync` (extended protocol) or is one simple `Query`. What
//! came since the last `Sync` says which kind it was: a statement (an `Execute`), a prepare
//! (`Parse`/`Describe` only, the first use of a statement on a connection), or nothing at all, a
//! ping (sqlx pings every connection it takes back into its pool). The counts are exact and do
//! not depend on timing, unlike any latency figure.
//!
//! TLS is declined (the server never sees the client's SSLRequest), so the messages are readable.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Round trips seen so far, over every connection of one proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Round trips that executed at least one statement.
    pub statements: AtomicU64,
    /// Round trips that only prepared statements.
    pub prepares: AtomicU64,
    /// Round trips with nothing in them.
    pub pings: AtomicU64,
}

/// A snapshot of `Counters`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    pub statements: u64,
    pub prepares: u64,
    pub pings: u64,
}

impl Count {
    pub fn since(self, earlier: Count) -> Count {
        Count {
            statements: self.statements - earlier.statements,
            prepares: self.prepares - earlier.prepares,
            pings: self.pings - earlier.pings,
        }
    }
}

impl Counters {
    pub fn now(&self) -> Count {
        Count {
            statements: self.statements.load(Ordering::SeqCst),
            prepares: self.prepares.load(Ordering::SeqCst),
            pings: self.pings.load(Ordering::SeqCst),
        }
    }
}

pub struct Proxy {
    pub port: u16,
    pub counters: Arc<Counters>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counters) = (upstream.clone(), shared.clone());
                // A connection ends when either side closes it; how is of no interest here.
                tokio::spawn(async move {
                    let _ = forward(client, &upstream, &counters).await;
                });
            }
        });
        Ok(Proxy {
            port,
            counters,
            accept,
        })
    }

    /// `url` (a `postgres://` URL) with its host and port replaced by this proxy's.
    pub fn url_for(&self, url: &str) -> anyhow::Result<String> {
        let (scheme, rest) = url.split_once("://").context("a postgres:// URL")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(user, _)| user);
        Ok(match user {
            Some(user) => format!("{scheme}://{user}@127.0.0.1:{}/{path}", self.port),
            None => format!("{scheme}://127.0.0.1:{}/{path}", self.port),
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The `host:port` of a `postgres://` URL (5432 when it names no port).
pub fn upstream_of(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once("://").context("a postgres:// URL")?.1;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    Ok(match host.rsplit_once(':') {
        Some(_) => host.to_owned(),
        None => format!("{host}:5432"),
    })
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

async fn forward(mut client: TcpStream, upstream: &str, counters: &Counters) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    // Startup: an SSLRequest (or GSSENCRequest) is declined here; the StartupMessage goes on.
    let startup = loop {
        let len = client.read_u32().await? as usize;
        anyhow::ensure!(
            (8..=10_000).contains(&len),
            "startup message of {len} bytes"
        );
        let mut body = vec![0; len - 4];
        client.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            client.write_all(b"N").await?;
            continue;
        }
        let mut message = (len as u32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        break message;
    };
    let server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    let (mut from_server, mut to_client) = (server, client);
    let (mut server_read, mut server_write) = from_server.split();
    let (mut client_read, mut client_write) = to_client.split();
    server_write.write_all(&startup).await?;
    let upstream = async {
        let mut since_sync = Pending::default();
        loop {
            let kind = match client_read.read_u8().await {
                Ok(kind) => kind,
                Err(_) => return anyhow::Ok(()),
            };
            let len = client_read.read_u32().await? as usize;
            anyhow::ensure!(len >= 4, "message of {len} bytes");
            let mut message = Vec::with_capacity(len + 1);
            message.push(kind);
            message.extend_from_slice(&(len as u32).to_be_bytes());
            message.resize(len + 1, 0);
            client_read.read_exact(&mut message[5..]).await?;
            server_write.write_all(&message).await?;
            since_sync.saw(kind, counters);
        }
    };
    let downstream = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        anyhow::Ok(())
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

/// What the client sent since its last `Sync`.
#[derive(Default)]
struct Pending {
    executes: bool,
    anything: bool,
}

impl Pending {
    fn saw(&mut self, kind: u8, counters: &Counters) {
        match kind {
            b'Q' => {
                counters.statements.fetch_add(1, Ordering::SeqCst);
            }
            b'E' => {
                self.executes = true;
                self.anything = true;
            }
            b'S' => {
                let counter = match (self.executes, self.anything) {
                    (true, _) => &counters.statements,
                    (false, true) => &counters.prepares,
                    (false, false) => &counters.pings,
                };
                counter.fetch_add(1, Ordering::SeqCst);
                *self = Pending::default();
            }
            _ => self.anything = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(messages: &[u8]) -> Count {
        let counters = Counters::default();
        let mut pending = Pending::default();
        for &kind in messages {
            pending.saw(kind, &counters);
        }
        counters.now()
    }

    #[test]
    fn round_trips_are_told_apart_by_what_came_before_sync() {
        // A first use: prepare, then bind and execute; then a cached use; then a ping.
        let seen = count(b"PDSBESBESS");
        assert_eq!(
            seen,
            Count {
                statements: 2,
                prepares: 1,
                pings: 1
            }
        );
        // Simple queries (BEGIN, COMMIT) are a round trip each.
        assert_eq!(count(b"QQ").statements, 2);
    }

    #[test]
    fn urls_are_pointed_at_the_proxy() -> anyhow::Result<()> {
        assert_eq!(
            upstream_of("postgres://postgres@127.0.0.1:5432/db")?,
            "127.0.0.1:5432"
        );
        assert_eq!(upstream_of("postgres://localhost/db")?, "localhost:5432");
        Ok(())
    }
}
