//! The reaper's policy as configured (`[policy]` and
//! `[policy.templates.NAME]`): the timeouts, and which apply to a template.
//! The decisions they lead to are the reaper's (`reaper/policy.rs`).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

/// The reaper's timeouts (config `[policy]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// No keyboard or mouse input on any display for this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// No RDP client connected for this long.
    #[serde(with = "humantime_serde")]
    pub disconnected_timeout: Duration,
    /// READY for this long, whatever the activity.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// No report from the agent for this long.
    #[serde(with = "humantime_serde")]
    pub agent_lost_timeout: Duration,
    /// The IDLE_WARNING event goes out this long before the reaping.
    #[serde(with = "humantime_serde")]
    pub warning: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Policy {
            idle_timeout: min(30),
            disconnected_timeout: min(240),
            max_lifetime: min(12 * 60),
            agent_lost_timeout: min(10),
            warning: min(5),
        }
    }
}

/// Per-template changes to the policy (`[policy.templates.NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub disconnected_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub agent_lost_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub warning: Option<Duration>,
}

/// The policy and its per-template overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub default: Policy,
    pub templates: BTreeMap<String, PolicyOverride>,
}

impl Policies {
    /// The policy for desktops of `template`.
    pub fn for_template(&self, template: &str) -> Policy {
        let base = self.default.clone();
        match self.templates.get(template) {
            None => base,
            Some(o) => Policy {
                idle_timeout: o.idle_timeout.unwrap_or(base.idle_timeout),
                disconnected_timeout: o.disconnected_timeout.unwrap_or(base.disconnected_timeout),
                max_lifetime: o.max_lifetime.unwrap_or(base.max_lifetime),
                agent_lost_timeout: o.agent_lost_timeout.unwrap_or(base.agent_lost_timeout),
                warning: o.warning.unwrap_or(base.warning),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::default()
    }

    #[test]
    fn templates_override_single_timeouts() {
        let policies = Policies {
            default: policy(),
            templates: BTreeMap::from([(
                "lab".to_string(),
                PolicyOverride {
                    idle_timeout: Some(Duration::from_secs(600)),
                    ..Default::default()
                },
            )]),
        };
        assert_eq!(
            policies.for_template("lab").idle_timeout,
            Duration::from_secs(600)
        );
        assert_eq!(
            policies.for_template("lab").max_lifetime,
            policy().max_lifetime
        );
        assert_eq!(policies.for_template("other"), policy());
    }
}
