//! Closed-loop load: `concurrency` workers each send one request, wait for its answer, and send
//! the next, until `total` requests are done. Latencies go into an HDR histogram (microseconds).
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        // The bounds are constants that hdrhistogram accepts; keep a usable fallback anyway.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

pub fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(micros.max(1));
}

/// What one measured run did.
pub struct Measured {
    /// Requests completed.
    pub requests: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Measured {
    /// `items_per_request` items per completed request, per second.
    pub fn rate(&self, items_per_request: u64) -> f64 {
        (self.requests * items_per_request) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(i)` for i in `0..total`, `concurrency` at a time; the first error stops the run.
pub async fn closed_loop<F, Fut>(concurrency: usize, total: u64, op: F) -> anyhow::Result<Measured>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let op = op.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut hist = histogram();
            let mut done = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let sent = Instant::now();
                op(i).await?;
                record(&mut hist, sent.elapsed());
                done += 1;
            }
            anyhow::Ok((hist, done))
        });
    }
    let mut latency = histogram();
    let mut requests = 0;
    while let Some(worker) = workers.join_next().await {
        let (hist, done) = worker??;
        latency.add(&hist)?;
        requests += done;
    }
    Ok(Measured {
        requests,
        elapsed: started.elapsed(),
        latency,
    })
}

/// A user number in `0..n` for request `i`: every number once per `n` requests, in a scattered
/// order (multiplying by a large odd constant permutes `0..n` when `n` is a power of two; for
/// other `n` the modulo still spreads requests evenly).
pub fn scatter(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_runs_every_request_once() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let measured = closed_loop(4, 50, move |i| {
            let log = log.clone();
            async move {
                log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(i);
                Ok(())
            }
        })
        .await
        .ok();
        assert_eq!(
            measured.map(|m| (m.requests, m.latency.len())),
            Some((50, 50))
        );
        let mut seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn closed_loop_stops_at_the_first_error() {
        let outcome = closed_loop(2, 10, |i| async move {
            anyhow::ensure!(i != 3, "request 3 failed");
            Ok(())
        })
        .await;
        assert!(outcome.is_err());
    }
}
