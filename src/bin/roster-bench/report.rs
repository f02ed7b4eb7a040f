//! The report: a table on stdout, the targets with PASS/FAIL, and the same as JSON.
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Measured;

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
    /// What `rate` counts, e.g. `users/s`.
    pub unit: &'static str,
    pub roster: Stats,
    pub floor: Option<Stats>,
    /// roster rate / floor rate.
    pub ratio: Option<f64>,
    /// roster p99 / floor p99.
    pub p99_ratio: Option<f64>,
}

impl Row {
    pub fn new(scenario: impl Into<String>, unit: &'static str, roster: Stats) -> Row {
        Row {
            scenario: scenario.into(),
            unit,
            roster,
            floor: None,
            ratio: None,
            p99_ratio: None,
        }
    }

    pub fn with_floor(mut self, floor: Stats) -> Row {
        self.ratio = Some(self.roster.rate / floor.rate.max(1e-9));
        self.p99_ratio = Some(self.roster.p99_ms / floor.p99_ms.max(1e-9));
        self.floor = Some(floor);
        self
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
    pub concurrency: usize,
    pub rows: Vec<Row>,
    pub memory: Memory,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Report {
    fn row(&self, scenario: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == scenario)
    }

    /// Checks every target (issue 7) that this run has the numbers for.
    pub fn check_targets(&mut self) {
        let mut checks = Vec::new();
        let mut ratio = |scenario: &str, at_least: f64| {
            if let Some(ratio) = self.row(scenario).and_then(|r| r.ratio) {
                checks.push(Check {
                    target: format!("{scenario} >= {:.0}% of the floor", at_least * 100.0),
                    measured: format!("{:.0}%", ratio * 100.0),
                    pass: ratio >= at_least,
                });
            }
        };
        ratio("upsert", 0.60);
        ratio("partial", 0.50);
        ratio("get", 0.50);
        let queries: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.scenario.starts_with("query@"))
            .collect();
        if let Some(largest) = queries.last() {
            ratio(&largest.scenario.clone(), 0.50);
        }
        ratio("delete-task", 0.25);
        if let Some(row) = self.row("get")
            && let Some(p99) = row.p99_ratio
        {
            checks.push(Check {
                target: "get p99 <= 3x the floor's p99".into(),
                measured: format!("{p99:.2}x"),
                pass: p99 <= 3.0,
            });
        }
        if let (Some(small), Some(large)) = (queries.first(), queries.last())
            && queries.len() > 1
        {
            let growth = large.roster.p99_ms / small.roster.p99_ms.max(1e-9);
            checks.push(Check {
                target: format!("{} p99 <= 2x {} p99", large.scenario, small.scenario),
                measured: format!("{growth:.2}x"),
                pass: growth <= 2.0,
            });
        }
        if let Some(row) = self.row("watch-task-lag") {
            checks.push(Check {
                target: "WatchTask lag p99 <= 250 ms".into(),
                measured: format!("{:.1} ms", row.roster.p99_ms),
                pass: row.roster.p99_ms <= 250.0,
            });
        }
        if let Some(idle) = self.memory.idle_mib {
            checks.push(Check {
                target: "RSS idle <= 64 MiB".into(),
                measured: format!("{idle:.1} MiB"),
                pass: idle <= 64.0,
            });
        }
        if let Some(peak) = self.memory.peak_mib {
            checks.push(Check {
                target: "RSS peak <= 160 MiB".into(),
                measured: format!("{peak:.1} MiB"),
                pass: peak <= 160.0,
            });
        }
        self.checks = checks;
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "roster-bench  {}  |  {}  |  {} cores  |  concurrency {}  |  roster {}",
            self.date,
            self.database_version,
            self.cores,
            self.concurrency,
            self.roster_commit.as_deref().unwrap_or("(commit unknown)")
        );
        let _ = writeln!(out, "command: {}", self.command);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| {:<16} | {:<9} | {:>10} | {:>8} | {:>8} | {:>10} | {:>8} | {:>8} | {:>12} | {:>9} |",
            "scenario",
            "unit",
            "roster",
            "p50 ms",
            "p99 ms",
            "floor",
            "p50 ms",
            "p99 ms",
            "roster/floor",
            "p99 ratio"
        );
        let _ = writeln!(
            out,
            "|{:-<18}|{:-<11}|{:->12}|{:->10}|{:->10}|{:->12}|{:->10}|{:->10}|{:->14}|{:->11}|",
            "", "", ":", ":", ":", ":", ":", ":", ":", ":"
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
                "| {:<16} | {:<9} | {:>10} | {:>8.2} | {:>8.2} | {:>10} | {:>8} | {:>8} | {:>12} | {:>9} |",
                row.scenario,
                row.unit,
                rate,
                row.roster.p50_ms,
                row.roster.p99_ms,
                floor(|s| s.rate, 0),
                floor(|s| s.p50_ms, 2),
                floor(|s| s.p99_ms, 2),
                ratio(row.ratio, true),
                ratio(row.p99_ratio, false),
            );
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
                "  {}  {:<42} measured {}",
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
