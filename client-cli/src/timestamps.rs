//! Conversions of protobuf times and durations.

use std::time::{Duration, SystemTime};

/// A protobuf timestamp as a `SystemTime`; `None` when unset or out of range.
pub fn system_time(ts: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    ts.and_then(|ts| SystemTime::try_from(*ts).ok())
}

/// A protobuf timestamp in RFC 3339 UTC with milliseconds, e.g.
/// `2025-01-31T09:15:02.250Z`.
pub fn rfc3339_millis(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    system_time(ts).map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// A protobuf timestamp in RFC 3339 UTC to the second.
pub fn rfc3339_seconds(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    system_time(ts).map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// The UTC time of day of a protobuf timestamp, `HH:MM:SS`.
pub fn utc_time_of_day(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let secs = system_time(ts)?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs()
        % 86_400;
    Some(format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

/// A protobuf timestamp as the wall-clock time in `tz`, to the minute, with
/// the weekday: `Mon 2026-12-07 08:00`, and with `zone` the zone's
/// abbreviation too: `Mon 2026-12-07 08:00 CET`.
pub fn wall_time(
    ts: Option<&prost_types::Timestamp>,
    tz: &jiff::tz::TimeZone,
    zone: bool,
) -> Option<String> {
    let ts = ts?;
    let at = jiff::Timestamp::new(ts.seconds, ts.nanos)
        .ok()?
        .to_zoned(tz.clone());
    let format = if zone {
        "%a %Y-%m-%d %H:%M %Z"
    } else {
        "%a %Y-%m-%d %H:%M"
    };
    Some(at.strftime(format).to_string())
}

/// A protobuf duration as a `Duration`; zero when unset or negative.
pub fn duration(d: Option<&prost_types::Duration>) -> Duration {
    d.and_then(|d| Duration::try_from(*d).ok())
        .unwrap_or_default()
}

/// Time from `then` to `now`; zero when `then` is in the future.
pub fn since(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_in_utc() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
        };
        assert_eq!(
            rfc3339_millis(Some(&ts)).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        assert_eq!(
            rfc3339_seconds(Some(&ts)).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(rfc3339_millis(None), None);
    }

    #[test]
    fn times_of_day_are_utc() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 999_000_000,
        };
        assert_eq!(utc_time_of_day(Some(&ts)).as_deref(), Some("22:13:20"));
        let midnight = prost_types::Timestamp {
            seconds: 86_400 * 3,
            nanos: 0,
        };
        assert_eq!(
            utc_time_of_day(Some(&midnight)).as_deref(),
            Some("00:00:00")
        );
        let before_1970 = prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(utc_time_of_day(Some(&before_1970)), None);
        assert_eq!(utc_time_of_day(None), None);
    }

    #[test]
    fn wall_times_are_in_the_zone_given() {
        let tz = |name: &str| jiff::tz::TimeZone::get(name).expect("a known zone");
        // 2026-12-07T07:00:00Z, a Monday: 08:00 in Paris (winter time).
        let monday = prost_types::Timestamp {
            seconds: 1_796_626_800,
            nanos: 0,
        };
        assert_eq!(
            wall_time(Some(&monday), &tz("Europe/Paris"), true).as_deref(),
            Some("Mon 2026-12-07 08:00 CET")
        );
        assert_eq!(
            wall_time(Some(&monday), &tz("America/New_York"), false).as_deref(),
            Some("Mon 2026-12-07 02:00")
        );
        // Summer time: 2026-07-06T06:00:00Z is 08:00 in Paris.
        let july = prost_types::Timestamp {
            seconds: 1_783_317_600,
            nanos: 0,
        };
        assert_eq!(
            wall_time(Some(&july), &tz("Europe/Paris"), true).as_deref(),
            Some("Mon 2026-07-06 08:00 CEST")
        );
        assert_eq!(wall_time(None, &jiff::tz::TimeZone::UTC, true), None);
    }

    #[test]
    fn negative_or_missing_durations_are_zero() {
        let negative = prost_types::Duration {
            seconds: -3,
            nanos: 0,
        };
        assert_eq!(duration(Some(&negative)), Duration::ZERO);
        assert_eq!(duration(None), Duration::ZERO);
        let d = prost_types::Duration {
            seconds: 12,
            nanos: 300_000_000,
        };
        assert_eq!(duration(Some(&d)), Duration::from_millis(12_300));
    }
}
