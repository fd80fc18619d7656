//! A pool's settings (`[pools.NAME]`), as written and as checked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::schedule::{Window, WindowSpec};

/// The failure rule of a pool: when it stops growing (`pool/restraint.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub window: Duration,
    pub backoff: Duration,
}

/// `[pools.NAME]` as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Template of its desktops; empty: `vm.template`.
    #[serde(default)]
    pub template: String,
    /// Ready desktops wanted outside the schedule's windows.
    pub size: u32,
    /// An unclaimed desktop older than this is replaced.
    #[serde(default = "twelve_hours", with = "humantime_serde")]
    pub max_age: Duration,
    /// Desktops of the pool built at once, at most.
    #[serde(default = "two")]
    pub max_building: u32,
    /// Failed builds within `failure_window` that restrain the pool.
    #[serde(default = "three")]
    pub failure_limit: u32,
    #[serde(default = "twenty_minutes", with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a restrained pool builds nothing.
    #[serde(default = "ten_minutes", with = "humantime_serde")]
    pub backoff: Duration,
    /// When a claim runs the playbook's per-user part: "auto" (for a
    /// session user, or when `ansible.extra_vars.ad_join_domain` is set)
    /// or "always".
    #[serde(default)]
    pub per_user_playbook: PerUserPlaybook,
    /// Time zone of the schedule (e.g. "Europe/Paris"); empty: the server's.
    #[serde(default)]
    pub timezone: String,
    /// Sizes by time of day.
    #[serde(default)]
    pub schedule: Vec<WindowSpec>,
}

fn twelve_hours() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn twenty_minutes() -> Duration {
    Duration::from_secs(20 * 60)
}
fn ten_minutes() -> Duration {
    Duration::from_secs(10 * 60)
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}

/// When a claim runs the per-user part of the playbook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerUserPlaybook {
    /// Only when there is something per-user to do: a session user, or a
    /// domain (the user's access).
    #[default]
    Auto,
    /// At every claim (a site's playbook has per-user tasks of its own).
    Always,
}

/// A checked pool.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub template: String,
    pub size: u32,
    pub max_age: Duration,
    pub max_building: u32,
    pub restraint: Rule,
    pub per_user_playbook: PerUserPlaybook,
    pub timezone: jiff::tz::TimeZone,
    pub schedule: Vec<Window>,
}

/// The longest pool name: `pool-NAME` is the Terraform label of its
/// unclaimed desktops, and a label must fit a 20-character user name.
const MAX_NAME: usize = 15;

impl Pool {
    /// Checks `spec`; the error names what is wrong (the caller adds the key).
    pub fn check(name: &str, spec: &PoolSpec, default_template: &str) -> Result<Pool, String> {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "the pool name `{name}` must be 1-{MAX_NAME} lower-case letters, digits, '-' or '_'"
            ));
        }
        let template = if spec.template.is_empty() {
            default_template.to_string()
        } else {
            crate::domain::validate::template(&spec.template)
                .map_err(|_| "template: letters, digits, '.', '_' and '-' only, at most 64")?;
            spec.template.clone()
        };
        for (key, value) in [
            ("max_age", spec.max_age),
            ("failure_window", spec.failure_window),
            ("backoff", spec.backoff),
        ] {
            if value.is_zero() {
                return Err(format!("{key} must be longer than zero"));
            }
        }
        for (key, value) in [
            ("max_building", spec.max_building),
            ("failure_limit", spec.failure_limit),
        ] {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        let timezone = if spec.timezone.is_empty() {
            jiff::tz::TimeZone::system()
        } else {
            jiff::tz::TimeZone::get(&spec.timezone)
                .map_err(|_| format!("timezone `{}` is not a known time zone", spec.timezone))?
        };
        let schedule = spec
            .schedule
            .iter()
            .enumerate()
            .map(|(i, w)| Window::parse(w).map_err(|why| format!("schedule[{i}]: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pool {
            name: name.to_string(),
            template,
            size: spec.size,
            max_age: spec.max_age,
            max_building: spec.max_building,
            restraint: Rule {
                limit: spec.failure_limit,
                window: spec.failure_window,
                backoff: spec.backoff,
            },
            per_user_playbook: spec.per_user_playbook,
            timezone,
            schedule,
        })
    }

    /// Ready desktops wanted at `at_ms` (ms since the epoch): the size of
    /// the schedule's windows at that weekday and minute in the pool's time
    /// zone, else `size`.
    pub fn desired_at(&self, at_ms: i64) -> u32 {
        if self.schedule.is_empty() {
            return self.size;
        }
        let Some(local) = self.local(at_ms) else {
            return self.size;
        };
        let weekday = usize::try_from(local.weekday().to_monday_zero_offset()).unwrap_or(0);
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        super::schedule::size_at(self.size, &self.schedule, weekday, minute)
    }

    /// The midnight that starts the day of `at_ms` in the pool's time zone,
    /// in ms since the epoch (its claims "today" count from it).
    pub fn midnight_before(&self, at_ms: i64) -> Option<i64> {
        let start = self.local(at_ms)?.start_of_day().ok()?;
        Some(start.timestamp().as_millisecond())
    }

    /// `at_ms` on the clocks of the pool's time zone.
    fn local(&self, at_ms: i64) -> Option<jiff::Zoned> {
        let at = jiff::Timestamp::from_millisecond(at_ms).ok()?;
        Some(at.to_zoned(self.timezone.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2024-01-01 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_704_067_200_000;

    fn pool(timezone: jiff::tz::TimeZone) -> Pool {
        let spec = PoolSpec {
            template: String::new(),
            size: 1,
            max_age: twelve_hours(),
            max_building: 2,
            failure_limit: 3,
            failure_window: twenty_minutes(),
            backoff: ten_minutes(),
            per_user_playbook: PerUserPlaybook::Auto,
            timezone: String::new(),
            schedule: vec![WindowSpec {
                days: "mon-fri".into(),
                from: "08:00".into(),
                to: "09:00".into(),
                size: 5,
            }],
        };
        Pool {
            timezone,
            ..Pool::check("lab", &spec, "win11").expect("a valid pool")
        }
    }

    #[test]
    fn the_schedule_is_read_at_the_time_given_in_the_pools_zone() {
        let utc = pool(jiff::tz::TimeZone::UTC);
        assert_eq!(utc.desired_at(MONDAY + 8 * HOUR), 5);
        assert_eq!(utc.desired_at(MONDAY + 9 * HOUR), 1, "to is exclusive");
        assert_eq!(
            utc.desired_at(MONDAY + 5 * 24 * HOUR + 8 * HOUR),
            1,
            "saturday"
        );
        // 06:30 UTC is 08:30 two hours east.
        let east = pool(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)));
        assert_eq!(east.desired_at(MONDAY + 6 * HOUR + 30 * 60_000), 5);
        assert_eq!(utc.desired_at(MONDAY + 6 * HOUR + 30 * 60_000), 1);
    }

    #[test]
    fn the_day_starts_at_midnight_in_the_pools_zone() {
        let utc = pool(jiff::tz::TimeZone::UTC);
        assert_eq!(utc.midnight_before(MONDAY + 23 * HOUR), Some(MONDAY));
        assert_eq!(utc.midnight_before(MONDAY), Some(MONDAY));
        // At 23:00 UTC it is already Tuesday 01:00 two hours east.
        let east = pool(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)));
        assert_eq!(
            east.midnight_before(MONDAY + 23 * HOUR),
            Some(MONDAY + 22 * HOUR)
        );
    }
}
