//! Retention, at start and every hour: tool output lines older than
//! `limits.output_retention` are deleted (stage changes and warnings, which
//! tell a session's story, are kept; pruned lines leave gaps in a session's
//! sequence numbers), and audit entries older than
//! `limits.audit_retention`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{domain::time::now_ms, store::Store};

const EVERY: Duration = Duration::from_secs(3600);

/// Prunes until `shutdown`.
pub async fn run(
    store: Store,
    retention: Duration,
    audit_retention: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // One server at a time.
        let _pass = match store.try_pass("retention").await {
            Ok(Some(pass)) => pass,
            Ok(None) => continue,
            Err(err) => {
                tracing::error!(error = %err, "could not start pruning");
                continue;
            }
        };
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match store.prune_output(now_ms().saturating_sub(keep_ms)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old tool output lines"),
            Err(err) => tracing::error!(error = %err, "could not prune old tool output lines"),
        }
        let keep_ms = i64::try_from(audit_retention.as_millis()).unwrap_or(i64::MAX);
        match store.prune_audit(now_ms().saturating_sub(keep_ms)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old audit entries"),
            Err(err) => tracing::error!(error = %err, "could not prune old audit entries"),
        }
    }
}
