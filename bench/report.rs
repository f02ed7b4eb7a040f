//! The report: a table on stdout, the targets with PASS/FAIL, and the same as JSON.
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::Door;
use crate::load::Measured;
use crate::wire::Count;

/// Throughput and latency of one side (roster or floor) of a scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    /// Items (users, updates, reads, queries, events) per second.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub seconds: f64,
}

impl Stats {
    pub fn of(measured: &Measured, items_per_request: u64) -> Stats {
        Stats {
            rate: measured.rate(items_per_request),
            requests: measured.requests,
            seconds: measured.elapsed.as_secs_f64(),
            ..percentiles(&measured.latency)
        }
    }

    /// `items` in `elapsed`, with latencies from `latency`.
    pub fn of_items(items: u64, elapsed: Duration, latency: &Histogram<u64>) -> Stats {
        Stats {
            rate: items as f64 / elapsed.as_secs_f64().max(1e-9),
            requests: latency.len(),
            seconds: elapsed.as_secs_f64(),
            ..percentiles(latency)
        }
    }
}

fn percentiles(latency: &Histogram<u64>) -> Stats {
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Stats {
        rate: 0.0,
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        requests: latency.len(),
        seconds: 0.0,
    }
}

#[derive(Debug, Serialize)]
pub struct Row {
    /// e.g. `upsert`, `query@1000000`.
    pub scenario: String,
    /// The way into roster the requests took.
    pub door: Door,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// What `rate` counts, e.g. `users/s`.
    pub unit: &'static str,
    pub roster: Stats,
    pub floor: Option<Stats>,
    /// roster rate / floor rate.
    pub ratio: Option<f64>,
    /// roster p99 / floor p99.
    pub p99_ratio: Option<f64>,
    /// roster p50 - floor p50: the latency roster adds to each call.
    pub added_p50_ms: Option<f64>,
    /// On an HTTP row: its rate / the gRPC row's rate (same scenario and concurrency).
    pub of_grpc: Option<f64>,
}

impl Row {
    pub fn new(
        scenario: impl Into<String>,
        concurrency: usize,
        unit: &'static str,
        roster: Stats,
    ) -> Row {
        Row {
            scenario: scenario.into(),
            door: Door::Grpc,
            concurrency,
            unit,
            roster,
            floor: None,
            ratio: None,
            p99_ratio: None,
            added_p50_ms: None,
            of_grpc: None,
        }
    }

    /// The same row, measured through `door`.
    pub fn through(mut self, door: Door) -> Row {
        self.door = door;
        self
    }

    pub fn with_floor(mut self, floor: Stats) -> Row {
        self.ratio = Some(self.roster.rate / floor.rate.max(1e-9));
        self.p99_ratio = Some(self.roster.p99_ms / floor.p99_ms.max(1e-9));
        self.added_p50_ms = Some(self.roster.p50_ms - floor.p50_ms);
        self.floor = Some(floor);
        self
    }
}

/// One `import` into an empty database: does the last tenth of its batches cost what the first
/// did?
#[derive(Debug, Serialize)]
pub struct ImportRow {
    pub concurrency: usize,
    pub users: u64,
    /// Users per second over the whole import.
    pub rate: f64,
    /// The p50 latency of each tenth of the batches, in batch order.
    pub tenths_p50_ms: Vec<f64>,
    /// Last tenth's p50 / first tenth's p50.
    pub growth: f64,
}

impl ImportRow {
    pub fn new(concurrency: usize, measured: &Measured, batches: &[Duration]) -> ImportRow {
        let tenth = (batches.len() / 10).max(1);
        let tenths_p50_ms: Vec<f64> = batches
            .chunks(tenth)
            .take(10)
            .map(|chunk| {
                let mut ms: Vec<f64> = chunk.iter().map(|d| d.as_secs_f64() * 1e3).collect();
                ms.sort_by(f64::total_cmp);
                ms[ms.len() / 2]
            })
            .collect();
        let first = tenths_p50_ms.first().copied().unwrap_or_default();
        let last = tenths_p50_ms.last().copied().unwrap_or_default();
        ImportRow {
            concurrency,
            users: measured.requests * 100,
            rate: measured.rate(100),
            tenths_p50_ms,
            growth: last / first.max(1e-9),
        }
    }
}

/// Database round trips for one RPC, roster's beside the floor's (medians of single requests).
#[derive(Debug, Serialize)]
pub struct RoundTripRow {
    pub rpc: &'static str,
    /// Users the RPC writes or reads.
    pub users: u64,
    pub roster: Count,
    pub floor: Count,
}

impl RoundTripRow {
    pub fn new(rpc: &'static str, users: u64, roster: Count, floor: Count) -> RoundTripRow {
        RoundTripRow {
            rpc,
            users,
            roster,
            floor,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    /// VmRSS after startup, before any load.
    pub idle_mib: Option<f64>,
    /// max(VmHWM at the end, highest VmRSS sampled).
    pub peak_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub database: String,
    pub database_version: String,
    pub cores: usize,
    pub roster_commit: Option<String>,
    pub concurrency: Vec<usize>,
    pub rows: Vec<Row>,
    pub import: Vec<ImportRow>,
    pub round_trips: Vec<RoundTripRow>,
    pub memory: Memory,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Report {
    /// The gRPC row of `scenario` at `concurrency`.
    fn row(&self, scenario: &str, concurrency: usize) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.scenario == scenario && r.concurrency == concurrency && r.door == Door::Grpc
        })
    }

    /// Sets each HTTP row's rate as a share of its gRPC row's.
    pub fn compare_doors(&mut self) {
        let grpc: Vec<(String, usize, f64)> = self
            .rows
            .iter()
            .filter(|r| r.door == Door::Grpc)
            .map(|r| (r.scenario.clone(), r.concurrency, r.roster.rate))
            .collect();
        for row in self.rows.iter_mut().filter(|r| r.door == Door::Http) {
            row.of_grpc = grpc
                .iter()
                .find(|(scenario, c, _)| *scenario == row.scenario && *c == row.concurrency)
                .map(|(_, _, rate)| row.roster.rate / rate.max(1e-9));
        }
    }

    /// Checks every target (issue 13) that this run has the numbers for.
    pub fn check_targets(&mut self) {
        let mut checks = Vec::new();
        let mut check = |target: String, measured: String, pass: bool| {
            checks.push(Check {
                target,
                measured,
                pass,
            });
        };
        // Throughput at concurrency 16.
        let ratio = |scenario: &str, at_least: f64| {
            self.row(scenario, 16).and_then(|r| r.ratio).map(|ratio| {
                (
                    format!("c16 {scenario} >= {:.0}% of the floor", at_least * 100.0),
                    format!("{:.0}%", ratio * 100.0),
                    ratio >= at_least,
                )
            })
        };
        let queries: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.scenario.starts_with("query@") && r.concurrency == 16)
            .collect();
        let mut found = vec![
            ratio("upsert", 0.70),
            ratio("partial", 0.60),
            ratio("get", 0.60),
            queries.last().and_then(|q| ratio(&q.scenario, 0.60)),
            ratio("delete-task", 0.35),
        ];
        // The HTTP door against the gRPC door (issue 17).
        for row in &self.rows {
            if let (Door::Http, 16, Some(share)) = (row.door, row.concurrency, row.of_grpc) {
                found.push(Some((
                    format!("c16 {} over HTTP >= 80% of gRPC", row.scenario),
                    format!("{:.0}%", share * 100.0),
                    share >= 0.80,
                )));
            }
        }
        if let Some(p99) = self.row("get", 16).and_then(|r| r.p99_ratio) {
            found.push(Some((
                "c16 get p99 <= 2x the floor's p99".into(),
                format!("{p99:.2}x"),
                p99 <= 2.0,
            )));
        }
        if let (Some(small), Some(large)) = (queries.first(), queries.last())
            && queries.len() > 1
        {
            let growth = large.roster.p99_ms / small.roster.p99_ms.max(1e-9);
            found.push(Some((
                format!("c16 {} p99 <= 2x {} p99", large.scenario, small.scenario),
                format!("{growth:.2}x"),
                growth <= 2.0,
            )));
        }
        if let Some(row) = self.row("watch-task-lag", 16) {
            found.push(Some((
                "c16 WatchTask lag p99 <= 100 ms".into(),
                format!("{:.1} ms", row.roster.p99_ms),
                row.roster.p99_ms <= 100.0,
            )));
        }
        // Latency at concurrency 1.
        let added = |scenario: &str, at_most_ms: f64| {
            self.row(scenario, 1)
                .and_then(|r| r.added_p50_ms)
                .map(|added| {
                    (
                        format!("c1 {scenario} p50 <= floor's + {at_most_ms} ms"),
                        format!("+{added:.3} ms"),
                        added <= at_most_ms,
                    )
                })
        };
        found.push(added("get", 0.25));
        found.push(added("partial", 0.5));
        if let Some(row) = self.row("upsert", 1)
            && let Some(floor) = &row.floor
        {
            let times = row.roster.p50_ms / floor.p50_ms.max(1e-9);
            found.push(Some((
                "c1 upsert p50 <= 1.5x the floor's".into(),
                format!("{times:.2}x"),
                times <= 1.5,
            )));
        }
        // Round trips.
        let trips = |rpc: &str| self.round_trips.iter().find(|r| r.rpc == rpc);
        if let Some(get) = trips("GetUser") {
            found.push(Some((
                "GetUser alone: <= 1 statement".into(),
                format!("{}", get.roster.statements),
                get.roster.statements <= 1,
            )));
        }
        for (rpc, extra) in [("UpdateUsersPartial", 1), ("UpdateUsers", 2)] {
            if let Some(row) = trips(rpc) {
                found.push(Some((
                    format!("{rpc}: <= the floor's statements + {extra}"),
                    format!("{} vs {}", row.roster.statements, row.floor.statements),
                    row.roster.statements <= row.floor.statements + extra,
                )));
            }
        }
        // Import.
        for import in &self.import {
            found.push(Some((
                format!(
                    "import c{}: last tenth p50 <= 1.3x the first's",
                    import.concurrency
                ),
                format!("{:.2}x", import.growth),
                import.growth <= 1.3,
            )));
        }
        if let Some(idle) = self.memory.idle_mib {
            found.push(Some((
                "RSS idle <= 64 MiB".into(),
                format!("{idle:.1} MiB"),
                idle <= 64.0,
            )));
        }
        if let Some(peak) = self.memory.peak_mib {
            found.push(Some((
                "RSS peak <= 160 MiB".into(),
                format!("{peak:.1} MiB"),
                peak <= 160.0,
            )));
        }
        for (target, measured, pass) in found.into_iter().flatten() {
            check(target, measured, pass);
        }
        self.checks = checks;
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let concurrency: Vec<String> = self.concurrency.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            out,
            "roster-bench  {}  |  {}  |  {} cores  |  concurrency {}  |  roster {}",
            self.date,
            self.database_version,
            self.cores,
            concurrency.join(","),
            self.roster_commit.as_deref().unwrap_or("(commit unknown)")
        );
        let _ = writeln!(out, "command: {}", self.command);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| {:<16} | {:>3} | {:<4} | {:<9} | {:>10} | {:>8} | {:>8} | {:>10} | {:>8} | {:>8} | {:>12} | {:>9} | {:>9} | {:>7} |",
            "scenario",
            "c",
            "door",
            "unit",
            "roster",
            "p50 ms",
            "p99 ms",
            "floor",
            "p50 ms",
            "p99 ms",
            "roster/floor",
            "p99 ratio",
            "+p50 ms",
            "of gRPC"
        );
        let _ = writeln!(
            out,
            "|{:-<18}|{:->5}|{:-<6}|{:-<11}|{:->12}|{:->10}|{:->10}|{:->12}|{:->10}|{:->10}|{:->14}|{:->11}|{:->11}|{:->9}|",
            "", ":", "", "", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":"
        );
        for row in &self.rows {
            let floor = |f: fn(&Stats) -> f64, decimals: usize| {
                row.floor
                    .as_ref()
                    .map_or("-".to_owned(), |s| format!("{:.*}", decimals, f(s)))
            };
            let ratio = |r: Option<f64>, percent: bool| match r {
                Some(r) if percent => format!("{:.0}%", r * 100.0),
                Some(r) => format!("{r:.2}x"),
                None => "-".to_owned(),
            };
            let rate = if row.roster.rate > 0.0 {
                format!("{:.0}", row.roster.rate)
            } else {
                "-".to_owned()
            };
            let _ = writeln!(
                out,
                "| {:<16} | {:>3} | {:<4} | {:<9} | {:>10} | {:>8.2} | {:>8.2} | {:>10} | {:>8} | {:>8} | {:>12} | {:>9} | {:>9} | {:>7} |",
                row.scenario,
                row.concurrency,
                row.door.name(),
                row.unit,
                rate,
                row.roster.p50_ms,
                row.roster.p99_ms,
                floor(|s| s.rate, 0),
                floor(|s| s.p50_ms, 2),
                floor(|s| s.p99_ms, 2),
                ratio(row.ratio, true),
                ratio(row.p99_ratio, false),
                row.added_p50_ms
                    .map_or("-".to_owned(), |ms| format!("{ms:+.3}")),
                ratio(row.of_grpc, true),
            );
        }
        if !self.round_trips.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "round trips per call, one call at a time (median of {} calls; pings are sqlx's \
                 check of a connection it takes back)",
                15
            );
            let _ = writeln!(
                out,
                "| {:<18} | {:>5} | {:>17} | {:>12} | {:>16} | {:>11} | {:>17} |",
                "rpc",
                "users",
                "roster statements",
                "roster pings",
                "floor statements",
                "floor pings",
                "roster per user"
            );
            let _ = writeln!(
                out,
                "|{:-<20}|{:->7}|{:->19}|{:->14}|{:->18}|{:->13}|{:->19}|",
                "", ":", ":", ":", ":", ":", ":"
            );
            for row in &self.round_trips {
                let _ = writeln!(
                    out,
                    "| {:<18} | {:>5} | {:>17} | {:>12} | {:>16} | {:>11} | {:>17.2} |",
                    row.rpc,
                    row.users,
                    row.roster.statements,
                    row.roster.pings,
                    row.floor.statements,
                    row.floor.pings,
                    row.roster.statements as f64 / row.users.max(1) as f64,
                );
            }
        }
        if !self.import.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "import into an empty database, batches of 100: p50 ms of each tenth of the batches"
            );
            for import in &self.import {
                let tenths: Vec<String> = import
                    .tenths_p50_ms
                    .iter()
                    .map(|ms| format!("{ms:.2}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "  c{}: {} users, {:.0} users/s, last/first {:.2}x: {}",
                    import.concurrency,
                    import.users,
                    import.rate,
                    import.growth,
                    tenths.join(" ")
                );
            }
        }
        let _ = writeln!(out);
        let mib = |m: Option<f64>| m.map_or("-".to_owned(), |m| format!("{m:.1} MiB"));
        let _ = writeln!(
            out,
            "server RSS: idle {}, peak {}",
            mib(self.memory.idle_mib),
            mib(self.memory.peak_mib)
        );
        let _ = writeln!(out);
        if self.database.starts_with("postgres") {
            let _ = writeln!(out, "targets (PostgreSQL):");
        } else {
            let _ = writeln!(
                out,
                "targets (set for PostgreSQL; shown for reference on {}):",
                self.database
            );
        }
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  {}  {:<52} measured {}",
                if check.pass { "PASS" } else { "FAIL" },
                check.target,
                check.measured
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}
