//! Time as the server counts it: milliseconds since the Unix epoch, read
//! from a [`Clock`] so that decisions (the reaper's, the pools') can be
//! tested at any instant without sleeping, and the conversions to the
//! protobuf types and to the `HH:MM UTC` that messages show.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Where "now" comes from: the system's clock, or a [`ManualClock`] in
/// tests.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(ManualClock),
}

impl Clock {
    /// Milliseconds since the Unix epoch, now.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(clock) => clock.now_ms(),
        }
    }
}

/// A clock that moves only when told to; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(ms(by), Ordering::SeqCst);
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

/// Milliseconds since the Unix epoch, now, by the system's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in milliseconds (saturating).
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A time in ms since the epoch as a protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A span in ms (negative counts as 0) as a protobuf duration.
pub fn duration(ms: i64) -> prost_types::Duration {
    let ms = ms.max(0);
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// `HH:MM UTC` of a time in ms since the epoch.
pub fn clock_time(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000);
    format!(
        "{:02}:{:02} UTC",
        minutes.div_euclid(60).rem_euclid(24),
        minutes.rem_euclid(60)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(clock_time(0), "00:00 UTC");
        assert_eq!(clock_time(-60_000), "23:59 UTC");
        assert_eq!(clock_time((25 * 60 + 7) * 60_000), "01:07 UTC");
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
        let d = duration(-5);
        assert_eq!((d.seconds, d.nanos), (0, 0));
        assert_eq!(ms(Duration::MAX), i64::MAX);
    }

    #[test]
    fn a_manual_clock_moves_when_told_and_clones_share_it() {
        let manual = ManualClock::at(1_000);
        let clock = Clock::Manual(manual.clone());
        manual.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 3_000);
        manual.set(5);
        assert_eq!(clock.now_ms(), 5);
        assert!(Clock::System.now_ms() > 1_700_000_000_000);
    }
}
