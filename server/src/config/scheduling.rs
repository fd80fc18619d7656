//! `[schedules]`: when the server acts on users' schedules (a desktop READY
//! at a time of day): how far ahead it creates one, how late it still does
//! after a pause, and how often it looks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[schedules]` as written, and as the server uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduling {
    /// How long before the time a desktop is built from nothing: about the
    /// time a cold create takes to READY.
    #[serde(default = "default_lead", with = "humantime_serde")]
    pub lead: Duration,
    /// How long before it a desktop is claimed instead, when a warm pool of
    /// its template has one ready then.
    #[serde(default = "default_claim_lead", with = "humantime_serde")]
    pub claim_lead: Duration,
    /// How long after the time a desktop is still made (a server that was
    /// down); later, that day's is skipped.
    #[serde(default = "default_late", with = "humantime_serde")]
    pub late: Duration,
    /// How often the server looks at the schedules.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_lead() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_claim_lead() -> Duration {
    Duration::from_secs(60)
}
fn default_late() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_interval() -> Duration {
    Duration::from_secs(15)
}

impl Default for Scheduling {
    fn default() -> Self {
        Scheduling {
            lead: default_lead(),
            claim_lead: default_claim_lead(),
            late: default_late(),
            interval: default_interval(),
        }
    }
}

/// Checks `[schedules]`; the error names the key.
pub fn check(s: &Scheduling) -> Result<Scheduling, String> {
    if s.claim_lead > s.lead {
        return Err("`schedules.claim_lead` must not be longer than `schedules.lead`".into());
    }
    if s.interval.is_zero() || s.interval > s.claim_lead.max(Duration::from_secs(1)) {
        return Err(
            "`schedules.interval` must be above zero and at most `schedules.claim_lead`, \
             or a claim could come late"
                .into(),
        );
    }
    Ok(*s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_not_earlier_than_a_build_nor_later_than_a_pass() {
        assert!(check(&Scheduling::default()).is_ok());
        let early_claim = Scheduling {
            claim_lead: Duration::from_secs(3600),
            ..Scheduling::default()
        };
        assert!(check(&early_claim).unwrap_err().contains("claim_lead"));
        let slow = Scheduling {
            interval: Duration::from_secs(120),
            ..Scheduling::default()
        };
        assert!(check(&slow).unwrap_err().contains("interval"));
    }
}
