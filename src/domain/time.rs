//! Instants: roster stores and compares microseconds since the Unix epoch; callers see RFC 3339
//! strings (in JSON: filters, partial updates) or protobuf Timestamps.
use chrono::{DateTime, SecondsFormat, Utc};

use super::user::Micros;

pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
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
