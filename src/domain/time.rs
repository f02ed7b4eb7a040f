//! Instants: roster stores and compares microseconds since the Unix epoch; callers see RFC 3339
//! strings (in JSON: filters, partial updates) or protobuf Timestamps.
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch. Every instant roster stores has this form.
pub type Micros = i64;

/// The system clock. Code that stamps or compares instants reads a [`Clock`] instead, so that
/// tests can move time forward.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// Where roster reads the time: the system clock plus an offset that only ever grows.
///
/// Bans expire, tokens expire and presence fades with time. Tests check those without sleeping
/// by advancing the clock the server was started with; clones share the offset. Time keeps
/// flowing underneath, so deadlines, leases and ordering behave as in production, and instants
/// never go backwards.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> Micros {
        now_micros().saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset.fetch_add(by, Ordering::Relaxed);
    }
}

/// Parses an RFC 3339 instant (`2026-01-02T03:04:05Z`, any offset, any fraction precision,
/// truncated to microseconds).
pub fn parse_rfc3339(text: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

pub fn format_rfc3339(micros: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_runs_ahead_and_its_clones_follow() {
        let clock = Clock::default();
        let clone = clock.clone();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clone.now() >= before + 3_600_000_000);
        assert!(clone.now() - now_micros() >= 3_600_000_000 - 1_000_000);
    }

    #[test]
    fn round_trips_and_offsets() {
        let t = parse_rfc3339("2026-01-02T03:04:05.123456Z");
        assert_eq!(t, Some(1_767_323_045_123_456));
        assert_eq!(
            format_rfc3339(1_767_323_045_123_456),
            "2026-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            parse_rfc3339("2026-01-02T04:04:05+01:00"),
            parse_rfc3339("2026-01-02T03:04:05Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339(""), None);
    }
}
