//! The API's messages as the page reads them: JSON with the proto's field
//! names, states as labels (`READY`), times as RFC 3339 and durations in
//! seconds.

use daas_api::v1::{
    Amounts, AuditEntry, Node, Pool, Quota, Schedule, Session, SessionEvent, SessionState,
    Snapshot, session_event::Kind,
};
use serde_json::{Value, json};

fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map(|t| Value::from(t.to_string()))
        .unwrap_or(Value::Null)
}

fn seconds(d: Option<&prost_types::Duration>) -> Value {
    d.map(|d| Value::from(d.seconds as f64 + f64::from(d.nanos) / 1e9))
        .unwrap_or(Value::Null)
}

fn state(value: i32) -> &'static str {
    SessionState::try_from(value)
        .unwrap_or(SessionState::Unspecified)
        .label()
}

pub fn session(s: &Session) -> Value {
    let activity = s.activity.as_ref().map(|a| {
        json!({
            "last_report_at": time(a.last_report_at.as_ref()),
            "last_input_at": time(a.last_input_at.as_ref()),
            "rdp_clients": a.rdp_clients,
            "users": a.users,
            "reap_at": time(a.reap_at.as_ref()),
            "reap_reason": a.reap_reason,
        })
    });
    json!({
        "id": s.id,
        "username": s.username,
        "template": s.template,
        "state": state(s.state),
        "vm_name": s.vm_name,
        "created_at": time(s.created_at.as_ref()),
        "ready_at": time(s.ready_at.as_ref()),
        "failure": s.failure.as_ref().map(|f| json!({
            "stage": state(f.stage),
            "reason": f.reason,
        })),
        "activity": activity,
        "pool": s.pool,
        "size": s.size.as_ref().map(|z| z.name.clone()),
        "org": s.org,
        "restored_from": s.restored_from,
    })
}

/// A kept disk as the page shows it.
pub fn snapshot(k: &Snapshot) -> Value {
    json!({
        "id": k.id,
        "template": k.template,
        "size": k.size,
        "created_at": time(k.created_at.as_ref()),
        "restoring": k.restoring_session_id,
    })
}

pub fn event(e: &SessionEvent) -> Value {
    let mut out = json!({
        "sequence": e.sequence,
        "time": time(e.time.as_ref()),
        "state": state(e.state),
        "stage_elapsed": seconds(e.stage_elapsed.as_ref()),
    });
    match &e.kind {
        Some(Kind::StageChange(c)) => {
            out["kind"] = "stage".into();
            out["previous"] = state(c.previous).into();
            out["previous_duration"] = seconds(c.previous_duration.as_ref());
            out["message"] = c.message.clone().into();
        }
        Some(Kind::Output(line)) => {
            out["kind"] = "output".into();
            out["tool"] = daas_api::v1::Tool::try_from(line.tool)
                .map(|t| t.as_str_name().trim_start_matches("TOOL_").to_lowercase())
                .unwrap_or_default()
                .into();
            out["text"] = line.text.clone().into();
        }
        Some(Kind::IdleWarning(w)) => {
            out["kind"] = "idle_warning".into();
            out["reap_at"] = time(w.reap_at.as_ref());
            out["message"] = w.reason.clone().into();
        }
        None => out["kind"] = "other".into(),
    }
    if let Some(s) = &e.session {
        out["session"] = session(s);
    }
    out
}

pub fn pool(p: &Pool) -> Value {
    json!({
        "name": p.name,
        "template": p.template,
        "desired": p.desired,
        "ready": p.ready,
        "provisioning": p.provisioning,
        "claimed_today": p.claimed_today,
        "failures": p.failures,
        "restrained_until": time(p.restrained_until.as_ref()),
        "last_failure": p.last_failure,
        "oldest_ready_age": seconds(p.oldest_ready_age.as_ref()),
    })
}

/// A template of the catalog, with its sizes (the page's cards).
pub fn template(t: &crate::domain::catalog::Template) -> Value {
    json!({
        "name": t.name,
        "title": t.title,
        "description": t.description,
        "os": t.os,
        "sizes": t.sizes.iter().map(|s| json!({
            "name": s.name,
            "cores": s.cores,
            "memory_mb": s.memory_mb,
            "disk_gb": s.disk_gb,
        })).collect::<Vec<_>>(),
        "default_size": t.default_size,
    })
}

pub fn node(n: &Node) -> Value {
    json!({
        "name": n.name,
        "state": n.state().as_str_name().strip_prefix("NODE_STATE_").unwrap_or("UNSPECIFIED"),
        "drained": n.drained,
        "listed": n.listed,
        "seen_at": time(n.seen_at.as_ref()),
        "offline_since": time(n.offline_since.as_ref()),
        "cpus": n.cpus,
        "configured_cores": n.configured_cores,
        "memory_mb": n.memory_mb,
        "used_memory_mb": n.used_memory_mb,
        "configured_memory_mb": n.configured_memory_mb,
        "templates": n.templates,
        "template_storage": n.template_storage,
        "desktops": n.desktops,
        "pool_desktops": n.pool_desktops,
        "clones": n.clones,
    })
}

pub fn audit(a: &AuditEntry) -> Value {
    json!({
        "time": time(a.time.as_ref()),
        "actor": a.actor,
        "peer": a.peer,
        "action": a.action,
        "session_id": a.session_id,
        "owner": a.owner,
        "result": a.result,
        "detail": a.detail,
        "org": a.org,
    })
}

/// A schedule as the page shows it.
pub fn schedule(s: &Schedule) -> Value {
    json!({
        "id": s.id,
        "at": s.at,
        "days": s.days,
        "timezone": s.timezone,
        "template": s.template,
        "size": s.size,
        "org": s.org,
        "next_at": time(s.next_at.as_ref()),
        "last_run_at": time(s.last_run_at.as_ref()),
        "last_session_id": s.last_session_id,
        "last_error": s.last_error,
    })
}

/// A quota as the page shows it: the organisation's and the user's, each
/// amount `{used, max}` (max 0: no limit).
pub fn quota(q: &Quota) -> Value {
    let amounts = |used: Option<&Amounts>, max: Option<&Amounts>| {
        let (used, max) = (
            used.cloned().unwrap_or_default(),
            max.cloned().unwrap_or_default(),
        );
        json!({
            "desktops": {"used": used.desktops, "max": max.desktops},
            "cores": {"used": used.cores, "max": max.cores},
            "memory_mb": {"used": used.memory_mb, "max": max.memory_mb},
        })
    };
    json!({
        "org": q.org,
        "title": q.org_title,
        "org_usage": (!q.org.is_empty()).then(|| amounts(q.org_used.as_ref(), q.org_max.as_ref())),
        "user_usage": amounts(q.user_used.as_ref(), q.user_max.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use daas_api::v1::StageChange;

    use super::*;

    #[test]
    fn events_read_as_the_page_expects() {
        let e = SessionEvent {
            session_id: "s".into(),
            sequence: 3,
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            state: SessionState::Booting as i32,
            stage_elapsed: None,
            kind: Some(Kind::StageChange(StageChange {
                previous: SessionState::Provisioning as i32,
                previous_duration: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 500_000_000,
                }),
                message: "booting".into(),
            })),
            session: None,
        };
        let v = event(&e);
        assert_eq!(v["state"], "BOOTING");
        assert_eq!(v["kind"], "stage");
        assert_eq!(v["previous"], "PROVISIONING");
        assert_eq!(v["previous_duration"], 2.5);
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
    }
}
