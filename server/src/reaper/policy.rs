//! When a READY desktop is destroyed, and why: idle (no keyboard or mouse
//! input), disconnected (no RDP client), too old, or its agent silent. A
//! pure function of the policy, the session's clock and the time, so the
//! decisions are tested as a table.

use std::time::Duration;

use crate::{
    config::policy::Policy,
    domain::time::{clock_time, ms},
};

/// What the server knows of a READY session's activity, in ms since the
/// epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// Whether an agent reports from the desktop at all (agents configured);
    /// without one only `max_lifetime` applies.
    pub agent_expected: bool,
    pub ready_ms: i64,
    pub last_report_ms: Option<i64>,
    pub last_input_ms: Option<i64>,
    /// The last report that saw an RDP client connected.
    pub last_connected_ms: Option<i64>,
}

/// Which rule sets the reaping time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Idle,
    Disconnected,
    MaxLifetime,
    AgentLost,
}

impl Rule {
    /// The rule's name in metrics (`daas_reaps_total{reason}`).
    pub fn label(self) -> &'static str {
        match self {
            Rule::Idle => "idle",
            Rule::Disconnected => "disconnected",
            Rule::MaxLifetime => "max_lifetime",
            Rule::AgentLost => "agent_lost",
        }
    }
}

/// When the desktop will be reaped if nothing changes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub reap_at_ms: i64,
    pub rule: Rule,
    /// For people: "idle_timeout 30m: no input since 10:02 UTC".
    pub reason: String,
}

/// What the reaper does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep(Plan),
    Warn(Plan),
    Reap(Plan),
}

impl Decision {
    pub fn plan(&self) -> &Plan {
        match self {
            Decision::Keep(p) | Decision::Warn(p) | Decision::Reap(p) => p,
        }
    }
}

fn span(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Decides for one session at `now_ms`. Idle and disconnected times are
/// known only from the agent's reports; before the first report only the
/// lifetime and the agent's silence count, and the silence only when an
/// agent is expected.
pub fn decide(policy: &Policy, clock: &Clock, now_ms: i64) -> Decision {
    let plan = earliest(plans(policy, clock));
    if now_ms >= plan.reap_at_ms {
        Decision::Reap(plan)
    } else if now_ms >= plan.reap_at_ms.saturating_sub(ms(policy.warning)) {
        Decision::Warn(plan)
    } else {
        Decision::Keep(plan)
    }
}

/// The plan to show people: when the desktop is reaped if nobody uses it
/// and its agent goes on reporting. The agent's silence counts once it is
/// due a warning or the agent never reported; before that, a reporting
/// agent's deadline moves with every report and is not the plan (it would
/// otherwise hide the idle deadline behind a shorter agent_lost_timeout).
pub fn outlook(policy: &Policy, clock: &Clock, now_ms: i64) -> Plan {
    match decide(policy, clock, now_ms) {
        Decision::Keep(plan) if plan.rule == Rule::AgentLost && clock.last_report_ms.is_some() => {
            earliest(
                plans(policy, clock)
                    .into_iter()
                    .filter(|p| p.rule != Rule::AgentLost)
                    .collect(),
            )
        }
        decision => decision.plan().clone(),
    }
}

/// The earliest deadline; on a tie, the first listed. `plans` always holds
/// max_lifetime's.
fn earliest(mut plans: Vec<Plan>) -> Plan {
    let mut plan = plans.remove(0);
    for other in plans {
        if other.reap_at_ms < plan.reap_at_ms {
            plan = other;
        }
    }
    plan
}

/// Every rule's deadline that applies to `clock`, max_lifetime first.
fn plans(policy: &Policy, clock: &Clock) -> Vec<Plan> {
    let mut plans = vec![Plan {
        reap_at_ms: clock.ready_ms.saturating_add(ms(policy.max_lifetime)),
        rule: Rule::MaxLifetime,
        reason: format!(
            "max_lifetime {}: ready since {}",
            span(policy.max_lifetime),
            clock_time(clock.ready_ms)
        ),
    }];
    if clock.agent_expected || clock.last_report_ms.is_some() {
        let (since, what) = match clock.last_report_ms {
            Some(t) => (t, "no report from the agent since"),
            None => (clock.ready_ms, "the agent never reported; ready since"),
        };
        plans.push(Plan {
            reap_at_ms: since.saturating_add(ms(policy.agent_lost_timeout)),
            rule: Rule::AgentLost,
            reason: format!(
                "agent_lost_timeout {}: {what} {}",
                span(policy.agent_lost_timeout),
                clock_time(since)
            ),
        });
    }
    if clock.last_report_ms.is_some() {
        let input = clock.last_input_ms.unwrap_or(clock.ready_ms);
        plans.push(Plan {
            reap_at_ms: input.saturating_add(ms(policy.idle_timeout)),
            rule: Rule::Idle,
            reason: format!(
                "idle_timeout {}: no input since {}",
                span(policy.idle_timeout),
                clock_time(input)
            ),
        });
        let connected = clock.last_connected_ms.unwrap_or(clock.ready_ms);
        plans.push(Plan {
            reap_at_ms: connected.saturating_add(ms(policy.disconnected_timeout)),
            rule: Rule::Disconnected,
            reason: format!(
                "disconnected_timeout {}: no RDP client since {}",
                span(policy.disconnected_timeout),
                clock_time(connected)
            ),
        });
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn policy() -> Policy {
        let m = |n: u64| Duration::from_secs(60 * n);
        Policy {
            idle_timeout: m(30),
            disconnected_timeout: m(60),
            max_lifetime: m(600),
            agent_lost_timeout: m(10),
            warning: m(5),
        }
    }

    #[test]
    fn decisions_as_a_table() {
        // Ready at 10:00 (UTC, day 0).
        let ready = 10 * 60 * MIN;
        let reported = |input: i64, connected: Option<i64>, report: i64| Clock {
            agent_expected: true,
            ready_ms: ready,
            last_report_ms: Some(ready + report * MIN),
            last_input_ms: Some(ready + input * MIN),
            last_connected_ms: connected.map(|c| ready + c * MIN),
        };
        let silent = Clock {
            agent_expected: true,
            ready_ms: ready,
            ..Clock::default()
        };
        let no_agent = Clock {
            ready_ms: ready,
            ..Clock::default()
        };
        // (clock, minutes after ready, expected decision, rule, reap at minute)
        let cases: Vec<(Clock, i64, &str, Rule, i64)> = vec![
            // The agent never reported: agent_lost after 10 min, warned at 5.
            (silent, 1, "keep", Rule::AgentLost, 10),
            (silent, 6, "warn", Rule::AgentLost, 10),
            (silent, 10, "reap", Rule::AgentLost, 10),
            // No agent configured: only the lifetime counts.
            (no_agent, 60, "keep", Rule::MaxLifetime, 600),
            // Reporting, input 2 min ago, a client connected: idle rules.
            (reported(20, Some(22), 22), 22, "keep", Rule::AgentLost, 32),
            // Reports every minute, no input since minute 2: idle at 32.
            (reported(2, Some(27), 27), 27, "warn", Rule::Idle, 32),
            (reported(2, Some(32), 32), 32, "reap", Rule::Idle, 32),
            // Input keeps coming but nobody connected since minute 5.
            (
                reported(65, Some(5), 65),
                65,
                "reap",
                Rule::Disconnected,
                65,
            ),
            (
                reported(60, Some(5), 60),
                60,
                "warn",
                Rule::Disconnected,
                65,
            ),
            // Never connected at all: counted from ready.
            (reported(59, None, 59), 59, "warn", Rule::Disconnected, 60),
            // Busy all day: max_lifetime.
            (
                reported(597, Some(597), 597),
                597,
                "warn",
                Rule::MaxLifetime,
                600,
            ),
            (
                reported(600, Some(600), 600),
                600,
                "reap",
                Rule::MaxLifetime,
                600,
            ),
        ];
        for (i, (clock, now, expected, rule, reap_at)) in cases.into_iter().enumerate() {
            let decision = decide(&policy(), &clock, ready + now * MIN);
            let got = match &decision {
                Decision::Keep(_) => "keep",
                Decision::Warn(_) => "warn",
                Decision::Reap(_) => "reap",
            };
            let plan = decision.plan();
            assert_eq!(
                (got, plan.rule, plan.reap_at_ms),
                (expected, rule, ready + reap_at * MIN),
                "case {i}: {plan:?}"
            );
        }
    }

    #[test]
    fn the_outlook_of_a_reporting_agent_is_the_idle_deadline() {
        let ready = 10 * 60 * MIN;
        let clock = |report: i64| Clock {
            agent_expected: true,
            ready_ms: ready,
            last_report_ms: Some(ready + report * MIN),
            last_input_ms: Some(ready + 2 * MIN),
            last_connected_ms: Some(ready + report * MIN),
        };
        // Reported a minute ago: agent_lost (minute 13) is earlier than idle
        // (minute 32) but moves with every report; people see idle.
        let now = ready + 3 * MIN;
        assert_eq!(
            decide(&policy(), &clock(2), now).plan().rule,
            Rule::AgentLost
        );
        let plan = outlook(&policy(), &clock(2), now);
        assert_eq!((plan.rule, plan.reap_at_ms), (Rule::Idle, ready + 32 * MIN));
        // Silent for 6 of its 10 minutes: due a warning, so that is the plan.
        let now = ready + 8 * MIN;
        let plan = outlook(&policy(), &clock(2), now);
        assert_eq!(
            (plan.rule, plan.reap_at_ms),
            (Rule::AgentLost, ready + 12 * MIN)
        );
        // Never reported: the agent's silence is the plan from the start.
        let silent = Clock {
            agent_expected: true,
            ready_ms: ready,
            ..Clock::default()
        };
        assert_eq!(
            outlook(&policy(), &silent, ready + MIN).rule,
            Rule::AgentLost
        );
    }

    #[test]
    fn reasons_say_which_rule_and_since_when() {
        let ready = 10 * 60 * MIN;
        let clock = Clock {
            agent_expected: true,
            ready_ms: ready,
            last_report_ms: Some(ready + 31 * MIN),
            last_input_ms: Some(ready + 2 * MIN),
            last_connected_ms: Some(ready + 31 * MIN),
        };
        let decision = decide(&policy(), &clock, ready + 32 * MIN);
        assert_eq!(
            decision,
            Decision::Reap(Plan {
                reap_at_ms: ready + 32 * MIN,
                rule: Rule::Idle,
                reason: "idle_timeout 30m: no input since 10:02 UTC".into(),
            })
        );
    }
}
