//! What a warm pool does next, decided apart from doing it: a pure function
//! of the pool's settings, a snapshot of its desktops and the time (as the
//! reaper's `policy.rs`), so every decision (stale, expired and surplus
//! desktops, how many to build, the restraint after failures, the
//! schedule's size) is tested as a table at any instant without a store, a
//! pipeline or a sleep. `pool/mod.rs` reads the snapshot and acts.

use crate::{config::pools::Pool, domain::time::ms, pool::restraint};

/// An unclaimed desktop of the pool, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desktop {
    pub id: String,
    /// Its owner as the store names it (the audit entry of a reap says it).
    pub owner: String,
    pub template: String,
    /// Since when it waits: when it became READY, else when it was created.
    pub since_ms: i64,
    /// The cluster node it is on ("" when the module places VMs itself).
    pub node: String,
}

/// A build of the pool that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBuild {
    pub at_ms: i64,
    pub reason: String,
    /// Its session, whose events say when the pool is restrained.
    pub session: String,
}

/// A pool's desktops, as the store held them at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Unclaimed and READY, the longest waiting first.
    pub ready: Vec<Desktop>,
    /// Unclaimed and READY, of a template the pool no longer has: no
    /// create of its template would claim them.
    pub stale: Vec<Desktop>,
    /// Unclaimed and READY, on a node an admin drained: no create claims
    /// them, and they make way for desktops on other nodes.
    pub drained: Vec<Desktop>,
    /// Unclaimed and being built, oldest first.
    pub building: Vec<Desktop>,
    /// Failed builds since the window that counts for the restraint,
    /// oldest first.
    pub failures: Vec<FailedBuild>,
    pub claimed_today: usize,
}

/// Why a desktop is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// READY, of a template the pool no longer builds.
    Stale,
    /// Unclaimed for the pool's `max_age` or longer.
    Expired,
    /// One more than the pool wants now.
    Surplus,
    /// On a drained node: replaced on another.
    Drained,
}

impl Why {
    /// The rule in `daas_reaps_total` (and a `reap` audit entry), when the
    /// destruction is one.
    pub fn reap_rule(self) -> Option<&'static str> {
        match self {
            Why::Expired => Some("pool_max_age"),
            Why::Stale | Why::Surplus | Why::Drained => None,
        }
    }
}

/// A desktop to destroy, unless a create claims it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retire {
    pub id: String,
    pub owner: String,
    pub why: Why,
    /// For people: the session's failure message and the log line.
    pub reason: String,
}

/// What the pool does now, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Desktops to destroy, in this order.
    pub retire: Vec<Retire>,
    /// Desktops to start building (fewer if the server is full).
    pub build: usize,
    /// The pool wants more desktops but builds none until then: its
    /// builds keep failing ([`restraint`]).
    pub restrained_until: Option<i64>,
}

/// Decides for `pool` at `now_ms`: destroys stale, drained and expired desktops,
/// then the surplus over the size the schedule wants now (builds not done
/// first, newest first, then the oldest ready), or else builds the missing
/// ones, at most `max_building` at once, unless the pool is restrained.
pub fn decide(pool: &Pool, snap: &Snapshot, now_ms: i64) -> Actions {
    let mut actions = Actions::default();
    let mut retire = |desktop: &Desktop, why, reason| {
        actions.retire.push(Retire {
            id: desktop.id.clone(),
            owner: desktop.owner.clone(),
            why,
            reason,
        });
    };
    for desktop in &snap.stale {
        let reason = format!(
            "pool '{}' now builds template {}, not {}",
            pool.name, pool.template, desktop.template
        );
        retire(desktop, Why::Stale, reason);
    }
    for desktop in &snap.drained {
        let reason = format!(
            "pool '{}': node {} is drained; replacing the desktop on another node",
            pool.name, desktop.node
        );
        retire(desktop, Why::Drained, reason);
    }
    let max_age = ms(pool.max_age);
    let (expired, fresh): (Vec<_>, Vec<_>) = snap
        .ready
        .iter()
        .partition(|d| now_ms - d.since_ms >= max_age);
    for desktop in expired {
        let reason = format!(
            "pool '{}': unclaimed for longer than max_age {}; replacing it",
            pool.name,
            humantime::format_duration(pool.max_age)
        );
        retire(desktop, Why::Expired, reason);
    }
    let desired = pool.desired_at(now_ms) as usize;
    let have = fresh.len() + snap.building.len();
    if have > desired {
        // Builds not done are the cheapest to drop; then the oldest.
        let surplus = snap.building.iter().rev().chain(fresh.iter().copied());
        for desktop in surplus.take(have - desired) {
            let reason = format!(
                "pool '{}' wants {desired} desktops now; destroying one of {have}",
                pool.name
            );
            retire(desktop, Why::Surplus, reason);
        }
        return actions;
    }
    let need = desired - have;
    if need == 0 {
        return actions;
    }
    if let Some(until) = restrained_until(pool, snap, now_ms) {
        actions.restrained_until = Some(until);
        return actions;
    }
    let room = (pool.max_building as usize).saturating_sub(snap.building.len());
    actions.build = need.min(room);
    actions
}

/// Until when (ms since the epoch) the pool builds nothing at `now_ms`,
/// by its failed builds; None: it may build.
pub fn restrained_until(pool: &Pool, snap: &Snapshot, now_ms: i64) -> Option<i64> {
    let times: Vec<i64> = snap.failures.iter().map(|f| f.at_ms).collect();
    restraint::restrained_until(&pool.restraint, &times, now_ms)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{
        pools::{PerUserPlaybook, Rule},
        schedule::{Window, WindowSpec},
    };

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    /// 2024-01-01 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_704_067_200_000;
    /// Monday 10:00 UTC, outside the schedule's window.
    const NOW: i64 = MONDAY + 10 * HOUR;

    /// Pool `lab` of template win11: `size` outside the schedule, 6 from
    /// 08:00 to 09:00 daily (UTC); max_age 12 h; 3 failures in 20 min
    /// restrain it for 10 min.
    fn pool(size: u32, max_building: u32) -> Pool {
        let rush = WindowSpec {
            days: "daily".into(),
            from: "08:00".into(),
            to: "09:00".into(),
            size: 6,
        };
        Pool {
            name: "lab".into(),
            template: "win11".into(),
            size,
            max_age: Duration::from_secs(12 * 3600),
            max_building,
            restraint: Rule {
                limit: 3,
                window: Duration::from_secs(20 * 60),
                backoff: Duration::from_secs(10 * 60),
            },
            per_user_playbook: PerUserPlaybook::Auto,
            timezone: jiff::tz::TimeZone::UTC,
            schedule: vec![Window::parse(&rush).expect("a valid window")],
        }
    }

    /// A desktop of template win11 waiting since `since_ms`.
    fn desktop(id: &str, since_ms: i64) -> Desktop {
        Desktop {
            id: id.into(),
            owner: String::new(),
            template: "win11".into(),
            since_ms,
            node: String::new(),
        }
    }

    /// Failed builds at these minutes before NOW.
    fn failures(minutes_ago: &[i64]) -> Vec<FailedBuild> {
        minutes_ago
            .iter()
            .enumerate()
            .map(|(i, ago)| FailedBuild {
                at_ms: NOW - ago * MIN,
                reason: "terraform apply failed".into(),
                session: format!("f{i}"),
            })
            .collect()
    }

    #[test]
    fn decisions_as_a_table() {
        let fresh = |id| desktop(id, NOW - HOUR);
        // (what, pool, snapshot, now, retired (id, why), build, restrained until)
        type Case = (
            &'static str,
            Pool,
            Snapshot,
            i64,
            Vec<(&'static str, Why)>,
            usize,
            Option<i64>,
        );
        let cases: Vec<Case> = vec![
            (
                "an empty pool builds up to its size",
                pool(2, 2),
                Snapshot::default(),
                NOW,
                vec![],
                2,
                None,
            ),
            (
                "at most max_building at once",
                pool(5, 2),
                Snapshot::default(),
                NOW,
                vec![],
                2,
                None,
            ),
            (
                "builds under way count against max_building",
                pool(5, 2),
                Snapshot {
                    building: vec![desktop("b1", NOW)],
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                1,
                None,
            ),
            (
                "a desktop on a drained node is replaced: retired, and built anew",
                pool(2, 2),
                Snapshot {
                    ready: vec![fresh("r1")],
                    drained: vec![Desktop {
                        node: "pve2".into(),
                        ..fresh("d1")
                    }],
                    ..Snapshot::default()
                },
                NOW,
                vec![("d1", Why::Drained)],
                1,
                None,
            ),
            (
                "no room while max_building are under way",
                pool(5, 2),
                Snapshot {
                    building: vec![desktop("b1", NOW), desktop("b2", NOW)],
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                0,
                None,
            ),
            (
                "more under way than max_building (lowered): no room",
                pool(5, 1),
                Snapshot {
                    building: vec![desktop("b1", NOW), desktop("b2", NOW)],
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                0,
                None,
            ),
            (
                "ready and building make the size: nothing to do",
                pool(2, 2),
                Snapshot {
                    ready: vec![fresh("r1")],
                    building: vec![desktop("b1", NOW)],
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                0,
                None,
            ),
            (
                "an expired desktop is replaced",
                pool(2, 2),
                Snapshot {
                    ready: vec![desktop("old", NOW - 12 * HOUR), fresh("r1")],
                    ..Snapshot::default()
                },
                NOW,
                vec![("old", Why::Expired)],
                1,
                None,
            ),
            (
                "a millisecond short of max_age is not expired",
                pool(2, 2),
                Snapshot {
                    ready: vec![desktop("r0", NOW - 12 * HOUR + 1), fresh("r1")],
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                0,
                None,
            ),
            (
                "surplus: builds not done first, newest first, then the oldest ready",
                pool(1, 2),
                Snapshot {
                    ready: vec![desktop("r1", NOW - 2 * HOUR), fresh("r2")],
                    building: vec![desktop("b1", NOW - 2 * MIN), desktop("b2", NOW - MIN)],
                    ..Snapshot::default()
                },
                NOW,
                vec![
                    ("b2", Why::Surplus),
                    ("b1", Why::Surplus),
                    ("r1", Why::Surplus),
                ],
                0,
                None,
            ),
            (
                "an expired desktop does not count toward the surplus",
                pool(1, 2),
                Snapshot {
                    ready: vec![
                        desktop("old", NOW - 13 * HOUR),
                        desktop("r1", NOW - 2 * HOUR),
                        fresh("r2"),
                    ],
                    ..Snapshot::default()
                },
                NOW,
                vec![("old", Why::Expired), ("r1", Why::Surplus)],
                0,
                None,
            ),
            (
                "a size of zero empties the pool",
                pool(0, 2),
                Snapshot {
                    ready: vec![fresh("r1")],
                    building: vec![desktop("b1", NOW)],
                    ..Snapshot::default()
                },
                NOW,
                vec![("b1", Why::Surplus), ("r1", Why::Surplus)],
                0,
                None,
            ),
            (
                "a desktop of the old template goes and does not count",
                pool(1, 2),
                Snapshot {
                    stale: vec![Desktop {
                        template: "win10".into(),
                        ..fresh("s1")
                    }],
                    ..Snapshot::default()
                },
                NOW,
                vec![("s1", Why::Stale)],
                1,
                None,
            ),
            (
                "stale first, then expired, then surplus",
                pool(0, 2),
                Snapshot {
                    ready: vec![desktop("old", NOW - 12 * HOUR), fresh("r1")],
                    stale: vec![fresh("s1")],
                    ..Snapshot::default()
                },
                NOW,
                vec![
                    ("s1", Why::Stale),
                    ("old", Why::Expired),
                    ("r1", Why::Surplus),
                ],
                0,
                None,
            ),
            (
                "three failures in 20 min restrain a pool that would grow",
                pool(2, 2),
                Snapshot {
                    failures: failures(&[15, 8, 2]),
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                0,
                Some(NOW + 8 * MIN),
            ),
            (
                "restrained, it still replaces what expired, but builds nothing",
                pool(1, 2),
                Snapshot {
                    ready: vec![desktop("old", NOW - 12 * HOUR)],
                    failures: failures(&[15, 8, 2]),
                    ..Snapshot::default()
                },
                NOW,
                vec![("old", Why::Expired)],
                0,
                Some(NOW + 8 * MIN),
            ),
            (
                "after the back-off it builds again",
                pool(2, 2),
                Snapshot {
                    failures: failures(&[15, 8, 2]),
                    ..Snapshot::default()
                },
                NOW + 8 * MIN,
                vec![],
                2,
                None,
            ),
            (
                "failures spread wider than the window do not restrain",
                pool(2, 2),
                Snapshot {
                    failures: failures(&[25, 8, 2]),
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                2,
                None,
            ),
            (
                "a full pool is not said to be restrained",
                pool(1, 2),
                Snapshot {
                    ready: vec![fresh("r1")],
                    failures: failures(&[15, 8, 2]),
                    ..Snapshot::default()
                },
                NOW,
                vec![],
                0,
                None,
            ),
            (
                "a shrinking pool is not said to be restrained",
                pool(0, 2),
                Snapshot {
                    ready: vec![fresh("r1")],
                    failures: failures(&[15, 8, 2]),
                    ..Snapshot::default()
                },
                NOW,
                vec![("r1", Why::Surplus)],
                0,
                None,
            ),
            (
                "the schedule's window wants 6 at 08:00",
                pool(1, 6),
                Snapshot {
                    ready: vec![desktop("r1", MONDAY + 7 * HOUR)],
                    ..Snapshot::default()
                },
                MONDAY + 8 * HOUR,
                vec![],
                5,
                None,
            ),
            (
                "the window ends at 09:00: back to the size",
                pool(1, 6),
                Snapshot {
                    ready: vec![desktop("r1", MONDAY + 8 * HOUR), fresh("r2")],
                    ..Snapshot::default()
                },
                MONDAY + 9 * HOUR,
                vec![("r1", Why::Surplus)],
                0,
                None,
            ),
        ];
        for (what, pool, snap, now, retire, build, restrained) in cases {
            let actions = decide(&pool, &snap, now);
            let retired: Vec<(&str, Why)> = actions
                .retire
                .iter()
                .map(|r| (r.id.as_str(), r.why))
                .collect();
            assert_eq!(
                (retired, actions.build, actions.restrained_until),
                (retire, build, restrained),
                "{what}: {actions:?}"
            );
        }
    }

    #[test]
    fn reasons_say_what_the_pool_wants() {
        let snap = Snapshot {
            ready: vec![
                desktop("old", NOW - 12 * HOUR),
                desktop("r1", NOW - HOUR),
                desktop("r2", NOW - HOUR),
            ],
            stale: vec![Desktop {
                owner: "pool-lab".into(),
                template: "win10".into(),
                ..desktop("s1", NOW - HOUR)
            }],
            ..Snapshot::default()
        };
        let actions = decide(&pool(1, 2), &snap, NOW);
        let said: Vec<(&str, &str, Option<&str>)> = actions
            .retire
            .iter()
            .map(|r| (r.owner.as_str(), r.reason.as_str(), r.why.reap_rule()))
            .collect();
        assert_eq!(
            said,
            [
                (
                    "pool-lab",
                    "pool 'lab' now builds template win11, not win10",
                    None
                ),
                (
                    "",
                    "pool 'lab': unclaimed for longer than max_age 12h; replacing it",
                    Some("pool_max_age")
                ),
                (
                    "",
                    "pool 'lab' wants 1 desktops now; destroying one of 2",
                    None
                ),
            ]
        );
    }

    #[test]
    fn the_restraint_is_read_at_the_time_given() {
        let snap = Snapshot {
            failures: failures(&[15, 8, 2]),
            ..Snapshot::default()
        };
        let pool = pool(1, 2);
        assert_eq!(restrained_until(&pool, &snap, NOW), Some(NOW + 8 * MIN));
        assert_eq!(
            restrained_until(&pool, &snap, NOW + 8 * MIN - 1),
            Some(NOW + 8 * MIN)
        );
        assert_eq!(restrained_until(&pool, &snap, NOW + 8 * MIN), None);
    }
}
