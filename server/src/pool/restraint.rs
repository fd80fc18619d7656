//! A pool that keeps failing stops growing for a while: when its latest
//! failed build is the `limit`-th within `window`, it builds nothing new
//! until `backoff` after that failure. Then one build may try again; if it
//! fails too (and the window still holds enough failures), the pool waits
//! another back-off. A pure function of the failure times, so a restarted
//! server reaches the same answer from the store.

use crate::{config::pools::Rule, domain::time::ms};

/// Until when (ms since the epoch) the pool is restrained at `now_ms`,
/// given the times its builds failed; None: it may build.
pub fn restrained_until(rule: &Rule, failures_ms: &[i64], now_ms: i64) -> Option<i64> {
    let latest = *failures_ms.iter().max()?;
    let in_window = failures_ms
        .iter()
        .filter(|&&t| t <= latest && latest - t < ms(rule.window))
        .count();
    let until = latest.saturating_add(ms(rule.backoff));
    (in_window >= rule.limit as usize && now_ms < until).then_some(until)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIN: i64 = 60_000;

    fn rule() -> Rule {
        Rule {
            limit: 3,
            window: Duration::from_secs(20 * 60),
            backoff: Duration::from_secs(10 * 60),
        }
    }

    #[test]
    fn three_failures_in_twenty_minutes_restrain_for_the_backoff() {
        let failures = [0, 5 * MIN, 12 * MIN];
        assert_eq!(
            restrained_until(&rule(), &failures, 12 * MIN),
            Some(22 * MIN)
        );
        assert_eq!(
            restrained_until(&rule(), &failures, 21 * MIN),
            Some(22 * MIN)
        );
        assert_eq!(restrained_until(&rule(), &failures, 22 * MIN), None);
    }

    #[test]
    fn spread_out_failures_do_not() {
        assert_eq!(
            restrained_until(&rule(), &[0, 15 * MIN, 25 * MIN], 25 * MIN),
            None
        );
        assert_eq!(restrained_until(&rule(), &[0, 5 * MIN], 6 * MIN), None);
        assert_eq!(restrained_until(&rule(), &[], 0), None);
    }

    #[test]
    fn a_failed_retry_after_the_backoff_restrains_again() {
        // Restrained 12..22; the retry at 22 fails at 23: still 3 in 20 min.
        let failures = [5 * MIN, 12 * MIN, 23 * MIN];
        assert_eq!(
            restrained_until(&rule(), &failures, 23 * MIN),
            Some(33 * MIN)
        );
    }
}
