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

    /// Ready desktops wanted now.
    pub fn desired_now(&self) -> u32 {
        super::schedule::size_now(self.size, &self.schedule, &self.timezone)
    }
}
