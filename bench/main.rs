//! `roster-bench`: runs roster's scenarios over gRPC (and over the Stream-compatible HTTP door)
//! and the same SQL straight against a database of the same kind (the floor), in one run, and
//! reports them side by side. See BENCHMARKS.md.
mod cli;
mod data;
mod databases;
mod doors;
mod floor;
mod http_door;
mod load;
mod report;
mod roundtrips;
mod scenarios;
mod server;
mod wire;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use cli::{Args, DbKind, Door, IMPORT_CONCURRENCY, Scenario};
use data::Population;
use databases::FreshDb;
use doors::{Way, Work};
use floor::Floor;
use http_door::HttpDoor;
use report::{ImportRow, Memory, Report, RoundTripRow, Row, Stats};
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
    report.compare_doors();
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
    /// Where every roster the run starts logs; removed at the end.
    log_dir: PathBuf,
    idle_rss_kib: Option<u64>,
}

impl Bench {
    async fn start(args: &Args) -> anyhow::Result<Bench> {
        let population = Population::new();
        let floor_db = FreshDb::create(args.db, &args.pg_url, "floor").await?;
        roster::store::Store::migrate(&floor_db.url)
            .await
            .context("migrating the floor database")?;
        let connections = args.concurrency.iter().copied().max().unwrap_or(1);
        let floor = Floor::connect(&floor_db.url, connections, population.clone()).await?;
        let log_dir = std::env::temp_dir().join(format!("roster_bench_{}_log", std::process::id()));
        std::fs::create_dir_all(&log_dir)?;
        let (server, roster_db, roster_db_url) = match &args.addr {
            Some(addr) => (
                Server::existing(addr, args.http_addr.as_deref()).await?,
                None,
                args.addr_database_url.clone(),
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
                let server = Server::spawn(&binary, &db.url, &log_dir.join("roster.log")).await?;
                let url = db.url.clone();
                (server, Some(db), Some(url))
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
        let _ = std::fs::remove_dir_all(self.log_dir);
        Ok(())
    }

    async fn run(&self, args: &Args) -> anyhow::Result<Report> {
        let users = args.users;
        let population = &self.population;
        let sampler = self.server.pid().map(server::sample_peak_rss);
        scenarios::prepare_roles(&self.clients(1).await?).await?;
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        // Each concurrency's `upsert` creates its own `users` users through each door (door `d`
        // of the upsert's doors, round `r`: from user `(d * rounds + r) * users`); `partial` and
        // `get` pick among all of them, and each concurrency's `delete-task` deletes one round's
        // users of the first door.
        let rounds = args.concurrency.len() as u64;
        let per_door = users * rounds;
        let upsert_doors = match args.runs(Scenario::Upsert) {
            true => args.doors(Scenario::Upsert),
            false => vec![Door::Grpc],
        };
        let created = per_door * upsert_doors.len() as u64;

        if args.runs(Scenario::Upsert) {
            // Each round's follower starts where the last one stopped, not replaying its events.
            let mut feed_seen = 0;
            for (round, &c) in args.concurrency.iter().enumerate() {
                let (mut measured, mut feed) = (Vec::new(), None);
                for (d, &door) in upsert_doors.iter().enumerate() {
                    let first = (d as u64 * rounds + round as u64) * users;
                    let work = Work::Upsert { first, users };
                    let started = Instant::now();
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                    // The feed follows the first door's users, and is done before the next door.
                    let follower = match args.runs(Scenario::Feed) && d == 0 {
                        true => Some(tokio::spawn(scenarios::follow_feed(
                            self.server.channel().await?,
                            feed_seen,
                            population.clone(),
                            first..first + users,
                            started,
                            done_rx,
                        ))),
                        false => None,
                    };
                    let roster = work
                        .on_roster(&self.way(door, c).await?, population, c)
                        .await?;
                    let _ = done_tx.send(());
                    measured.push((door, roster));
                    if let Some(follower) = follower {
                        let seen = follower.await??;
                        feed_seen = seen.last_sequence;
                        feed = Some(Row::new(
                            "feed",
                            c,
                            "events/s",
                            Stats::of_items(seen.events, seen.elapsed, &seen.lag),
                        ));
                    }
                }
                // The floor creates the first door's users of the round.
                let first = round as u64 * users;
                let floor = Stats::of(&self.floor.upsert(first, users, c).await?, 100);
                for (door, roster) in measured {
                    let row = Row::new("upsert", c, "users/s", Stats::of(&roster, 100));
                    rows.push(row.through(door).with_floor(floor));
                }
                rows.extend(feed);
            }
            if args.runs(Scenario::Feed) {
                notes.push(
                    "feed: user.created events delivered to one WatchUserEvents follower per \
                     second, from the start of upsert to the last arrival; p50/p99 are the \
                     delay from each event's commit time (`at`) to its arrival"
                        .into(),
                );
            }
            if created > per_door {
                // The other doors' users, in the floor's database too (unmeasured).
                self.seed_floor(per_door, created).await?;
            }
        } else {
            self.seed(0, created).await?;
        }

        for &c in &args.concurrency {
            if args.runs(Scenario::Partial) {
                let work = Work::Partial {
                    users: created,
                    updates: args.updates,
                };
                let doors = args.doors(Scenario::Partial);
                rows.extend(
                    self.compare(&doors, "partial", "updates/s", work, c)
                        .await?,
                );
            }
        }
        for &c in &args.concurrency {
            if args.runs(Scenario::Get) {
                let work = Work::Get {
                    users: created,
                    reads: args.reads,
                };
                let doors = args.doors(Scenario::Get);
                rows.extend(self.compare(&doors, "get", "reads/s", work, c).await?);
            }
        }
        if args.door.contains(&Door::Http) && args.runs(Scenario::Get) {
            notes.push(
                "get over HTTP: Stream's API has no GetUser; the SDKs query \
                 `{\"id\": {\"$in\": [id]}}` (GET /api/v2/users?payload=), and so does the bench"
                    .into(),
            );
        }

        let mut live = created;
        if args.runs(Scenario::DeleteTask) {
            for (round, &c) in args.concurrency.iter().enumerate() {
                let first = round as u64 * users;
                let roster =
                    scenarios::delete_task(&self.clients(c).await?, population, first, users, c)
                        .await?;
                let floor = self.floor.delete(first, users).await?;
                rows.push(
                    Row::new(
                        "delete-task",
                        c,
                        "users/s",
                        Stats::of_items(roster.users, roster.elapsed, &roster.enqueue),
                    )
                    .with_floor(Stats::of(&floor::single(floor), users)),
                );
                rows.push(Row::new(
                    "watch-task-lag",
                    c,
                    "-",
                    Stats::of_items(0, roster.elapsed, &roster.lag),
                ));
            }
            if created > per_door {
                // The other doors' users go the same way, unmeasured, so that `query`'s sizes
                // count the same live users as in a gRPC-only run.
                let (first, others) = (per_door, created - per_door);
                scenarios::delete_task(&self.clients(4).await?, population, first, others, 4)
                    .await?;
                self.floor.delete(first, others).await?;
            }
            live = 0;
            notes.push(format!(
                "delete-task: DeleteUsers (soft) of 100 users each ({} tasks at each \
                 concurrency), from the first request to the last task completed as its \
                 WatchTask saw it; p50/p99 are the DeleteUsers answers; the floor is one UPDATE \
                 of the same {users} users",
                users / 100
            ));
            notes.push(
                "watch-task-lag: arrival of each WatchTask update minus the task's updated_at \
                 in it (written inside the item's transaction, just before its commit)"
                    .into(),
            );
        }

        if args.runs(Scenario::Query) {
            // The users seeded for `query` come after every upserted one.
            let mut next = created;
            for &size in &args.query_sizes {
                if size > live {
                    if self.roster_db_url.is_none() {
                        notes.push(format!(
                            "query@{size} skipped: --addr without --addr-database-url cannot \
                             add users"
                        ));
                        continue;
                    }
                    self.seed(next, next + size - live).await?;
                    next += size - live;
                    live = size;
                }
                for &c in &args.concurrency {
                    let work = Work::Query {
                        queries: args.queries,
                    };
                    let doors = args.doors(Scenario::Query);
                    let scenario = format!("query@{live}");
                    rows.extend(
                        self.compare(&doors, &scenario, "queries/s", work, c)
                            .await?,
                    );
                }
            }
        }

        let round_trips = match args.runs(Scenario::RoundTrips) {
            true => self.round_trips(args, &mut notes).await?,
            false => Vec::new(),
        };
        let import = match args.runs(Scenario::Import) {
            true => self.import(args).await?,
            false => Vec::new(),
        };

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
            concurrency: args.concurrency.clone(),
            rows,
            import,
            round_trips,
            memory,
            checks: Vec::new(),
            notes,
        })
    }

    /// `import`: for each of its concurrencies, a roster of its own on an empty database.
    async fn import(&self, args: &Args) -> anyhow::Result<Vec<ImportRow>> {
        let mut rows = Vec::new();
        for c in IMPORT_CONCURRENCY {
            let db = FreshDb::create(args.db, &args.pg_url, "import").await?;
            let log = self.log_path(&format!("import-{c}"));
            let server = Server::spawn(&self.binary(args)?, &db.url, &log).await?;
            let outcome = async {
                let clients = Clients::new(vec![server.channel().await?]);
                scenarios::prepare_roles(&clients).await?;
                let population = self.population.tagged(&format!("i{c}"));
                scenarios::import(&clients, &population, args.import_users, c).await
            }
            .await;
            server.stop().await?;
            db.drop_it().await?;
            let (measured, batches) = outcome?;
            rows.push(ImportRow::new(c, &measured, &batches));
        }
        Ok(rows)
    }

    /// `round-trips`: a second roster on roster's database, and a second floor on the floor's,
    /// each through a counting proxy; one request at a time, each followed by a pause in which
    /// the connection goes back to its pool (and is pinged), counted request by request.
    async fn round_trips(
        &self,
        args: &Args,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<Vec<RoundTripRow>> {
        let (Some(url), DbKind::Postgres) = (&self.roster_db_url, args.db) else {
            notes.push(
                "round-trips skipped: counted on PostgreSQL's wire, with a roster the bench \
                 starts"
                    .into(),
            );
            return Ok(Vec::new());
        };
        let roster_proxy = wire::Proxy::start(wire::upstream_of(url)?).await?;
        let log = self.log_path("round-trips");
        let server = Server::spawn(&self.binary(args)?, &roster_proxy.url_for(url)?, &log).await?;
        let floor_proxy = wire::Proxy::start(wire::upstream_of(&self.floor_db.url)?).await?;
        let population = self.population.tagged("rt");
        let floor = Floor::connect(
            &floor_proxy.url_for(&self.floor_db.url)?,
            1,
            population.clone(),
        )
        .await?;
        let outcome = roundtrips::count(
            &Clients::new(vec![server.channel().await?]),
            &roster_proxy.counters,
            &floor,
            &floor_proxy.counters,
            &population,
            args.runs(Scenario::Query),
        )
        .await;
        server.stop().await?;
        floor.close().await;
        outcome
    }

    /// The `roster` binary to start.
    fn binary(&self, args: &Args) -> anyhow::Result<PathBuf> {
        Ok(match &args.roster_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("the directory of roster-bench")?
                .join("roster"),
        })
    }

    /// Where a roster started for `name` logs.
    fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// `work` at concurrency `c` through each of `doors` in turn, then on the floor: a row for
    /// each door, each beside the floor.
    async fn compare(
        &self,
        doors: &[Door],
        scenario: &str,
        unit: &'static str,
        work: Work,
        c: usize,
    ) -> anyhow::Result<Vec<Row>> {
        let per_request = work.items_per_request();
        let mut measured = Vec::new();
        for &door in doors {
            let way = self.way(door, c).await?;
            measured.push((door, work.on_roster(&way, &self.population, c).await?));
        }
        let floor = Stats::of(&work.on_floor(&self.floor, c).await?, per_request);
        Ok(measured
            .into_iter()
            .map(|(door, roster)| {
                Row::new(scenario, c, unit, Stats::of(&roster, per_request))
                    .through(door)
                    .with_floor(floor)
            })
            .collect())
    }

    /// Fresh connections to roster through `door`, for `concurrency` workers.
    async fn way(&self, door: Door, concurrency: usize) -> anyhow::Result<Way> {
        Ok(match door {
            Door::Grpc => Way::Grpc(self.clients(concurrency).await?),
            Door::Http => {
                let addr = self
                    .server
                    .http_addr
                    .as_deref()
                    .context("the HTTP door's address: --http-addr")?;
                Way::Http(Box::new(HttpDoor::new(addr, concurrency)))
            }
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

    /// Adds users `from..to` to the floor's database alone (roster created them itself). The
    /// seeding analyzes the floor's database; roster's is analyzed too, so that neither side's
    /// planner knows more than the other's.
    async fn seed_floor(&self, from: u64, to: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        let base = chrono::Utc::now().timestamp_micros();
        data::seed(&self.floor_db.url, &self.population, from, to, base).await?;
        if let Some(url) = &self.roster_db_url {
            data::analyze(url).await?;
        }
        eprintln!(
            "seeded users {from}..{to} in the floor's database in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
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
