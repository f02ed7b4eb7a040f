//! The command line: which database, how much load, which scenarios, where the report goes.
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// UpdateUsers in batches of 100 new users (users/s).
    Upsert,
    /// Change-feed events delivered to one WatchUserEvents follower during `upsert`.
    Feed,
    /// UpdateUsersPartial of one custom key of one user (updates/s).
    Partial,
    /// GetUser point reads (reads/s).
    Get,
    /// QueryUsers: role and one custom key, newest first, limit 30, at each of `--query-sizes`.
    Query,
    /// DeleteUsers (soft) of every upserted user as tasks of 100, watched to completion.
    DeleteTask,
    /// UpdateUsers of `--import-users` new users into an empty database, batches of 100, at
    /// concurrency 1 and 4: does a batch cost the same at the end as at the start?
    Import,
    /// Database round trips per RPC, roster's and the floor's, counted on the wire
    /// (PostgreSQL only).
    RoundTrips,
}

pub const ALL_SCENARIOS: [Scenario; 8] = [
    Scenario::Upsert,
    Scenario::Feed,
    Scenario::Partial,
    Scenario::Get,
    Scenario::Query,
    Scenario::DeleteTask,
    Scenario::Import,
    Scenario::RoundTrips,
];

/// The way into roster a scenario's requests take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Door {
    /// roster's gRPC API (tonic, HTTP/2).
    Grpc,
    /// The Stream-compatible HTTP door (JSON over HTTP/1.1, keep-alive connections): `upsert`,
    /// `partial`, `get` (a QueryUsers by id: Stream's API has no GetUser) and `query` only.
    Http,
}

impl Door {
    pub fn name(self) -> &'static str {
        match self {
            Door::Grpc => "grpc",
            Door::Http => "http",
        }
    }
}

/// The scenarios the HTTP door runs; the others are gRPC only.
pub const HTTP_SCENARIOS: [Scenario; 4] = [
    Scenario::Upsert,
    Scenario::Partial,
    Scenario::Get,
    Scenario::Query,
];

/// The concurrencies `import` runs at.
pub const IMPORT_CONCURRENCY: [usize; 2] = [1, 4];

/// Measures roster over gRPC (and over its Stream-compatible HTTP door with `--door`), and the
/// same SQL sent straight to a database of the same kind (the floor), in one run. See
/// BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "roster-bench", version)]
pub struct Args {
    /// Database kind for roster and for the floor (each gets a fresh database).
    #[arg(long, value_enum, default_value_t = DbKind::Postgres)]
    pub db: DbKind,
    /// PostgreSQL server to create the fresh databases on (any database of it; used as admin).
    #[arg(
        long,
        env = "ROSTER_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_url: String,
    /// Requests in flight at once, for roster and for the floor alike; each scenario runs at
    /// each of them, in turn (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Scenarios to run (comma-separated); default all. `feed` needs `upsert`.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Doors to send `upsert`, `partial`, `get` and `query` through (comma-separated), each
    /// beside the other at each concurrency, against the same floor; default `grpc` (with
    /// `--tiny`: both). `feed`, `delete-task`, `import` and `round-trips` are gRPC only.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub door: Vec<Door>,
    /// Users written by `upsert` (a multiple of 100) through each door and deleted by
    /// `delete-task`, at each concurrency; `partial` and `get` pick among all of them.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// UpdateUsersPartial requests (one user each).
    #[arg(long, default_value_t = 10_000)]
    pub updates: u64,
    /// GetUser requests.
    #[arg(long, default_value_t = 20_000)]
    pub reads: u64,
    /// QueryUsers requests at each size.
    #[arg(long, default_value_t = 2_000)]
    pub queries: u64,
    /// Live users in the database for each round of `query`, ascending; users are bulk-inserted
    /// first (as roster writes them) to reach each size. `delete-task` runs before `query`, so
    /// the upserted users are deleted by then.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    pub query_sizes: Vec<u64>,
    /// Users `import` loads into each empty database (a multiple of 100).
    #[arg(long, default_value_t = 200_000)]
    pub import_users: u64,
    /// A small run that only checks the command works (CI): 300 users, 300 updates and reads,
    /// 30 queries at 4000 and 8000 users (a full page of matches needs 2400), 2000 imported;
    /// both doors unless `--door` says otherwise.
    #[arg(long)]
    pub tiny: bool,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Target a running roster (`host:port`, plaintext, no API secret) instead of starting one.
    /// Server RSS is then not reported.
    #[arg(long)]
    pub addr: Option<String>,
    /// With `--addr` and `--door http`: the address of that roster's HTTP door (`host:port`).
    #[arg(long, requires = "addr")]
    pub http_addr: Option<String>,
    /// With `--addr`: the database URL that roster uses, so that `query` can bulk-insert users to
    /// reach its sizes. Without it, query sizes above the users present are skipped.
    #[arg(long, requires = "addr")]
    pub addr_database_url: Option<String>,
    /// The roster binary to start; default: `roster` in the directory of this binary.
    #[arg(long, conflicts_with = "addr")]
    pub roster_bin: Option<PathBuf>,
}

impl Args {
    /// Applies `--tiny` and the default scenario list; checks what clap cannot.
    pub fn resolve(mut self) -> anyhow::Result<Args> {
        if self.tiny {
            self.users = 300;
            self.updates = 300;
            self.reads = 300;
            self.queries = 30;
            self.query_sizes = vec![4000, 8000];
            self.import_users = 2000;
        }
        if self.scenarios.is_empty() {
            self.scenarios = ALL_SCENARIOS.to_vec();
        }
        self.scenarios.sort();
        self.scenarios.dedup();
        if self.door.is_empty() {
            self.door = match self.tiny {
                true => vec![Door::Grpc, Door::Http],
                false => vec![Door::Grpc],
            };
        }
        self.door.sort();
        self.door.dedup();
        self.query_sizes.sort_unstable();
        self.query_sizes.dedup();
        self.concurrency.sort_unstable();
        self.concurrency.dedup();
        anyhow::ensure!(
            !self.concurrency.is_empty() && self.concurrency[0] > 0,
            "--concurrency must list numbers of at least 1"
        );
        anyhow::ensure!(
            self.users >= 100 && self.users.is_multiple_of(100),
            "--users must be a positive multiple of 100 (upsert and delete-task go by 100)"
        );
        anyhow::ensure!(
            self.import_users >= 1000 && self.import_users.is_multiple_of(100),
            "--import-users must be a multiple of 100, at least 1000 (ten tenths of batches)"
        );
        anyhow::ensure!(
            !self.runs(Scenario::Feed) || self.runs(Scenario::Upsert),
            "the feed scenario is measured during upsert: add upsert to --scenarios"
        );
        anyhow::ensure!(
            self.addr.is_none() || self.http_addr.is_some() || !self.door.contains(&Door::Http),
            "--door http with --addr needs --http-addr (the HTTP door of that roster)"
        );
        Ok(self)
    }

    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The doors `scenario` goes through in this run (gRPC alone for those HTTP does not cover).
    pub fn doors(&self, scenario: Scenario) -> Vec<Door> {
        match HTTP_SCENARIOS.contains(&scenario) {
            true => self.door.clone(),
            false => vec![Door::Grpc],
        }
    }
}
