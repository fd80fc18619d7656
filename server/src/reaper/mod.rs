//! The reaper: destroys READY desktops nobody uses, through the same path
//! as DestroySession, after an IDLE_WARNING event; and explains to callers
//! why a desktop is still alive.

pub mod policy;

use std::sync::Arc;

use daas_api::v1::{Activity, SessionState};

use crate::audit::{Act, Actor};
use crate::{
    config::Config,
    config::policy::Policy,
    domain::time::{Clock as TimeSource, clock_time, timestamp},
    provision::Pipeline,
    reaper::policy::{Clock, Decision, decide, outlook},
    store::{SessionRecord, Store, StoreError},
};

/// The session's clock for the policy; None before it is READY.
fn clock_of(config: &Config, record: &SessionRecord) -> Option<Clock> {
    let ready_ms = record.ready_ms?;
    Some(Clock {
        agent_expected: config.agent.endpoint.is_some(),
        ready_ms,
        last_report_ms: record.activity.last_report_ms,
        last_input_ms: record.activity.last_input_ms,
        last_connected_ms: record.activity.last_connected_ms,
    })
}

/// The policy of a session: its template's, or for a warm pool's desktop
/// nobody has claimed only the agent's silence (its pool replaces it after
/// `max_age`; nobody uses it, so idleness means nothing).
fn policy_of(config: &Config, record: &SessionRecord) -> Policy {
    let policy = config.policies.for_template(&record.template);
    if !record.is_unclaimed() {
        return policy;
    }
    // Further than any desktop lives: a century.
    let never = std::time::Duration::from_secs(100 * 365 * 86_400);
    Policy {
        idle_timeout: never,
        disconnected_timeout: never,
        max_lifetime: never,
        ..policy
    }
}

/// What `GetSession` / `ListSessions` show of a READY session's activity
/// and the reaper's plan for it at `now_ms`.
pub fn why_alive(config: &Config, record: &SessionRecord, now_ms: i64) -> Option<Activity> {
    if record.state != SessionState::Ready {
        return None;
    }
    let clock = clock_of(config, record)?;
    let policy = policy_of(config, record);
    let mut plan = outlook(&policy, &clock, now_ms);
    // A pool's unclaimed desktop waits to be claimed; its pool replaces it
    // after max_age.
    if let Some(pool) = record
        .pool
        .as_ref()
        .filter(|_| record.is_unclaimed())
        .and_then(|name| config.pools.get(name))
    {
        let max_age = i64::try_from(pool.max_age.as_millis()).unwrap_or(i64::MAX);
        plan.reap_at_ms = clock.ready_ms.saturating_add(max_age);
        plan.reason = format!(
            "unclaimed in warm pool '{}': replaced at {} (max_age {}) unless a create claims it",
            pool.name,
            clock_time(plan.reap_at_ms),
            humantime::format_duration(pool.max_age)
        );
    }
    let a = &record.activity;
    Some(Activity {
        last_report_at: a.last_report_ms.map(timestamp),
        last_input_at: a.last_input_ms.map(timestamp),
        rdp_clients: a.rdp_clients,
        users: a.users.clone(),
        agent_version: a.agent_version.clone(),
        reap_at: Some(timestamp(plan.reap_at_ms)),
        reap_reason: plan.reason,
    })
}

/// Runs the reaper until the pipeline shuts down, at the times `clock`
/// tells.
pub async fn run(config: Arc<Config>, store: Store, pipeline: Pipeline, clock: TimeSource) {
    let shutdown = pipeline.shutdown_token();
    let mut tick = tokio::time::interval(config.reaper_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(err) = sweep(&config, &store, &pipeline, clock.now_ms()).await {
            tracing::error!(error = %err, "the reaper could not read the sessions");
        }
    }
}

/// One pass over the READY sessions, as at `now_ms`, unless another
/// server runs it now.
pub async fn sweep(
    config: &Config,
    store: &Store,
    pipeline: &Pipeline,
    now_ms: i64,
) -> Result<(), StoreError> {
    // One server at a time: a desktop is warned once and reaped once.
    let Some(_pass) = store.try_pass("reaper").await? else {
        return Ok(());
    };
    for record in store.list(None, Some(SessionState::Ready)).await? {
        let Some(clock) = clock_of(config, &record) else {
            continue;
        };
        let policy = policy_of(config, &record);
        let id = record.id.clone();
        match decide(&policy, &clock, now_ms) {
            Decision::Keep(_) => {
                if record.activity.warned_reap_ms.is_some() {
                    store.clear_warning(&id).await?;
                }
            }
            Decision::Warn(plan) => {
                if record.activity.warned_reap_ms.is_none() {
                    tracing::info!(session = %id, reason = %plan.reason, "warning before reaping");
                    store
                        .idle_warning(&id, plan.reap_at_ms, plan.reason)
                        .await?;
                }
            }
            Decision::Reap(plan) => {
                tracing::info!(session = %id, reason = %plan.reason, "reaping");
                let pipeline = pipeline.clone();
                // Destroys take a while; the sweep goes on.
                let unclaimed = record.is_unclaimed();
                let owner = record.username.clone();
                tokio::spawn(async move {
                    let reason = format!("reaped: {}", plan.reason);
                    let result = if unclaimed {
                        // Unless a create claims it meanwhile.
                        pipeline.destroy_unclaimed(&id, reason).await
                    } else {
                        pipeline.destroy_because(&id, reason).await.map(|_| true)
                    };
                    match result {
                        Ok(true) => {
                            pipeline.metrics().reap(plan.rule.label());
                            let act = Act::new("reap").session(&id, &owner).detail(plan.reason);
                            pipeline
                                .audit()
                                .record(&Actor::internal("reaper"), act)
                                .await;
                        }
                        Ok(false) => {}
                        Err(err) => tracing::warn!(session = %id, error = %err, "reaping failed"),
                    }
                });
            }
        }
    }
    Ok(())
}
