//! `roster-bench`: runs roster's scenarios over gRPC and the same SQL straight against a database
//! of the same kind (the floor), in one run, and reports both side by side. See BENCHMARKS.md.
mod cli;
mod data;
mod databases;
mod floor;
mod load;
mod report;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use cli::{Args, DbKind, Scenario};
use data::Population;
use databases::FreshDb;
use floor::Floor;
use report::{Memory, Report, Row, Stats};
use scenarios::Clients;
use server::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().resolve()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let bench = Bench::start(&args).await?;
    let outcome = bench.run(&args).await;
    let log_tail = bench.server.log_tail();
    bench.finish().await?;
    let mut report = match outcome {
        Ok(report) => report,
        Err(err) => {
            if !log_tail.is_empty() {
                eprintln!("--- roster log (tail) ---\n{log_tail}");
            }
            return Err(err);
        }
    };
    report.command = command;
    report.check_targets();
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON report: {}", path.display());
    }
    Ok(())
}

/// Everything a run sets up, torn down by `finish` whatever happened in between.
struct Bench {
    server: Server,
    roster_db: Option<FreshDb>,
    /// The database roster uses, when known (always, unless `--addr` without a URL).
    roster_db_url: Option<String>,
    floor_db: FreshDb,
    floor: Floor,
    population: Population,
    log_dir: Option<PathBuf>,
    idle_rss_kib: Option<u64>,
}

impl Bench {
    async fn start(args: &Args) -> anyhow::Result<Bench> {
        let population = Population::new();
        let floor_db = FreshDb::create(args.db, &args.pg_url, "floor").await?;
        roster::store::Store::migrate(&floor_db.url)
            .await
            .context("migrating the floor database")?;
        let floor = Floor::connect(&floor_db.url, args.concurrency, population.clone()).await?;
        let (server, roster_db, roster_db_url, log_dir) = match &args.addr {
            Some(addr) => (
                Server::existing(addr).await?,
                None,
                args.addr_database_url.clone(),
                None,
            ),
            None => {
                let binary = match &args.roster_bin {
                    Some(path) => path.clone(),
                    None => std::env::current_exe()?
                        .parent()
                        .context("the directory of roster-bench")?
                        .join("roster"),
                };
                let db = FreshDb::create(args.db, &args.pg_url, "roster").await?;
                let log_dir =
                    std::env::temp_dir().join(format!("roster_bench_{}_log", std::process::id()));
                std::fs::create_dir_all(&log_dir)?;
                let server = Server::spawn(&binary, &db.url, &log_dir).await?;
                let url = db.url.clone();
                (server, Some(db), Some(url), Some(log_dir))
            }
        };
        // Startup work (migrations, pools, first task poll) settles before idle is read.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_rss_kib = server.pid().and_then(server::rss).map(|r| r.current_kib);
        Ok(Bench {
            server,
            roster_db,
            roster_db_url,
            floor_db,
            floor,
            population,
            log_dir,
            idle_rss_kib,
        })
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        self.floor.close().await;
        self.floor_db.drop_it().await?;
        if let Some(db) = self.roster_db {
            db.drop_it().await?;
        }
        if let Some(dir) = self.log_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    async fn run(&self, args: &Args) -> anyhow::Result<Report> {
        let c = args.concurrency;
        let users = args.users;
        let population = &self.population;
        let sampler = self.server.pid().map(server::sample_peak_rss);
        scenarios::prepare_roles(&self.clients(c).await?).await?;
        let mut rows = Vec::new();
        let mut notes = Vec::new();

        if args.runs(Scenario::Upsert) {
            let started = Instant::now();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let follower = match args.runs(Scenario::Feed) {
                true => Some(tokio::spawn(scenarios::follow_feed(
                    self.server.channel().await?,
                    population.prefix().to_owned(),
                    users,
                    started,
                    done_rx,
                ))),
                false => None,
            };
            let roster = scenarios::upsert(&self.clients(c).await?, population, users, c).await?;
            let _ = done_tx.send(());
            let floor = self.floor.upsert(users, c).await?;
            rows.push(
                Row::new("upsert", "users/s", Stats::of(&roster, 100))
                    .with_floor(Stats::of(&floor, 100)),
            );
            if let Some(follower) = follower {
                let feed = follower.await??;
                rows.push(Row::new(
                    "feed",
                    "events/s",
                    Stats::of_items(feed.events, feed.elapsed, &feed.lag),
                ));
                notes.push(
                    "feed: user.created events delivered to one WatchUserEvents follower per \
                     second, from the start of upsert to the last arrival; p50/p99 are the \
                     delay from each event's commit time (`at`) to its arrival"
                        .into(),
                );
            }
        } else {
            self.seed(0, users).await?;
        }
        let mut live = users;

        if args.runs(Scenario::Partial) {
            let roster =
                scenarios::partial(&self.clients(c).await?, population, users, args.updates, c)
                    .await?;
            let floor = self.floor.partial(users, args.updates, c).await?;
            rows.push(
                Row::new("partial", "updates/s", Stats::of(&roster, 1))
                    .with_floor(Stats::of(&floor, 1)),
            );
        }
        if args.runs(Scenario::Get) {
            let roster =
                scenarios::get(&self.clients(c).await?, population, users, args.reads, c).await?;
            let floor = self.floor.get(users, args.reads, c).await?;
            rows.push(
                Row::new("get", "reads/s", Stats::of(&roster, 1)).with_floor(Stats::of(&floor, 1)),
            );
        }
        if args.runs(Scenario::Query) {
            for &size in &args.query_sizes {
                if size > live {
                    if self.roster_db_url.is_none() {
                        notes.push(format!(
                            "query@{size} skipped: --addr without --addr-database-url cannot \
                             add users"
                        ));
                        continue;
                    }
                    self.seed(live, size).await?;
                    live = size;
                }
                let roster = scenarios::query(&self.clients(c).await?, args.queries, c).await?;
                let floor = self.floor.query(args.queries, c).await?;
                rows.push(
                    Row::new(format!("query@{live}"), "queries/s", Stats::of(&roster, 1))
                        .with_floor(Stats::of(&floor, 1)),
                );
            }
        }
        if args.runs(Scenario::DeleteTask) {
            let roster =
                scenarios::delete_task(&self.clients(c).await?, population, users, c).await?;
            let floor = self.floor.delete(users).await?;
            rows.push(
                Row::new(
                    "delete-task",
                    "users/s",
                    Stats::of_items(roster.users, roster.elapsed, &roster.enqueue),
                )
                .with_floor(Stats::of(&floor::single(floor), users)),
            );
            rows.push(Row::new(
                "watch-task-lag",
                "-",
                Stats::of_items(0, roster.elapsed, &roster.lag),
            ));
            notes.push(format!(
                "delete-task: {} DeleteUsers (soft) of 100 users each, from the first request \
                 to the last task completed as its WatchTask saw it; p50/p99 are the DeleteUsers \
                 answers; the floor is one UPDATE of all {users} users",
                roster.tasks
            ));
            notes.push(
                "watch-task-lag: arrival of each WatchTask update minus the task's updated_at \
                 in it (written inside the item's transaction, just before its commit)"
                    .into(),
            );
        }

        let memory = match (self.server.pid(), sampler) {
            (Some(pid), Some((sampled, handle))) => {
                let hwm = server::rss(pid).map(|r| r.peak_kib).unwrap_or_default();
                handle.abort();
                let sampled = sampled.load(std::sync::atomic::Ordering::Relaxed);
                Memory {
                    idle_mib: self.idle_rss_kib.map(mib),
                    peak_mib: Some(mib(hwm.max(sampled))),
                }
            }
            _ => Memory::default(),
        };
        Ok(Report {
            command: String::new(),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            database: match args.db {
                DbKind::Sqlite => "sqlite".into(),
                DbKind::Postgres => "postgres".into(),
            },
            database_version: self.floor.version().await?,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            roster_commit: git_commit(),
            concurrency: c,
            rows,
            memory,
            checks: Vec::new(),
            notes,
        })
    }

    /// Fresh connections for a scenario (up to 4, shared round-robin by the workers): roster
    /// closes connections past their maximum age, so connections are not kept across scenarios.
    async fn clients(&self, concurrency: usize) -> anyhow::Result<Clients> {
        let mut channels = Vec::new();
        for _ in 0..concurrency.clamp(1, 4) {
            channels.push(self.server.channel().await?);
        }
        Ok(Clients::new(channels))
    }

    /// Adds users `from..to` to roster's database and the floor's, as roster writes them.
    async fn seed(&self, from: u64, to: u64) -> anyhow::Result<()> {
        let url = self
            .roster_db_url
            .as_deref()
            .context("--addr needs --addr-database-url to add users directly")?;
        let started = Instant::now();
        let base = chrono::Utc::now().timestamp_micros();
        let roster = data::seed(url, &self.population, from, to, base);
        let floor = data::seed(&self.floor_db.url, &self.population, from, to, base);
        tokio::try_join!(roster, floor)?;
        eprintln!(
            "seeded users {from}..{to} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The commit of the checkout this binary was built from, `+dirty` with uncommitted changes.
fn git_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    })
}
