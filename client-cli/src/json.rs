//! Machine-readable output: sessions, events, warm pools, templates, the
//! cluster's nodes, audit entries, quotas, schedules and kept disks as JSON
//! values.

use std::io::Write;

use daas_api::v1::{
    Amounts, AuditEntry, ListTemplatesResponse, Node, NodeState, OutputStream, Pool, Quota,
    Schedule, Session, SessionEvent, SessionState, Size, Snapshot, Tool, session_event::Kind,
};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::timestamps::{duration, millis, rfc3339_millis};

/// Prints one JSON value on its own line of stdout.
pub fn print(value: &Value) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

/// One session. Fields the server left unset are `null`.
pub fn session(s: &Session) -> Value {
    json!({
        "id": s.id,
        "username": s.username,
        "session_user": non_empty(&s.session_user),
        "template": non_empty(&s.template),
        "state": s.state().label(),
        "vm_name": non_empty(&s.vm_name),
        "vm_id": non_empty(&s.vm_id),
        "rdp_host": non_empty(&s.rdp_host),
        "rdp_port": non_zero(s.rdp_port),
        "ssh_host": non_empty(&s.ssh_host),
        "ssh_port": non_zero(s.ssh_port),
        "created_at": rfc3339_millis(s.created_at.as_ref()),
        "updated_at": rfc3339_millis(s.updated_at.as_ref()),
        "ready_at": rfc3339_millis(s.ready_at.as_ref()),
        "failure": s.failure.as_ref().map(|f| json!({
            "stage": state(f.stage()),
            "reason": f.reason,
        })),
        "activity": s.activity.as_ref().map(|a| json!({
            "last_report_at": rfc3339_millis(a.last_report_at.as_ref()),
            "last_input_at": rfc3339_millis(a.last_input_at.as_ref()),
            "rdp_clients": a.rdp_clients,
            "users": a.users,
            "agent_version": non_empty(&a.agent_version),
            "reap_at": rfc3339_millis(a.reap_at.as_ref()),
            "reap_reason": non_empty(&a.reap_reason),
        })),
        "pool": non_empty(&s.pool),
        "node": non_empty(&s.node),
        "size": s.size.as_ref().map(size),
        "org": non_empty(&s.org),
        "restored_from": non_empty(&s.restored_from),
    })
}

/// A size of a template.
fn size(s: &Size) -> Value {
    json!({
        "name": s.name,
        "cores": s.cores,
        "memory_mb": s.memory_mb,
        "disk_gb": s.disk_gb,
    })
}

/// The templates the caller may use, with the default and whether the
/// server has a catalog (`open`: any template name goes).
pub fn templates(answer: &ListTemplatesResponse) -> Value {
    json!({
        "templates": answer.templates.iter().map(|t| json!({
            "name": t.name,
            "title": t.title,
            "description": t.description,
            "os": non_empty(&t.os),
            "sizes": t.sizes.iter().map(size).collect::<Vec<_>>(),
            "default_size": t.default_size,
            "groups": t.groups,
            "pools": t.pools,
            "persistent": t.persistent,
            "idle_timeout_s": t.idle_timeout.map(|d| d.seconds),
            "disconnected_timeout_s": t.disconnected_timeout.map(|d| d.seconds),
            "max_lifetime_s": t.max_lifetime.map(|d| d.seconds),
        })).collect::<Vec<_>>(),
        "default_template": answer.default_template,
        "open": answer.open,
    })
}

/// A quota as the server gave it: in a maximum, 0 is no limit; what the
/// server left unset is `null` (the organisation's fields for a user in
/// none).
pub fn quota(q: &Quota) -> Value {
    json!({
        "org": non_empty(&q.org),
        "org_title": non_empty(&q.org_title),
        "org_max": q.org_max.as_ref().map(amounts),
        "org_used": q.org_used.as_ref().map(amounts),
        "username": non_empty(&q.username),
        "user_max": q.user_max.as_ref().map(amounts),
        "user_used": q.user_used.as_ref().map(amounts),
        "administers": q.administers,
    })
}

/// One schedule as the server gave it: `at` and `days` in `timezone`;
/// `template`, `size` and `org` are `null` when empty (the defaults, no
/// organisation), the last run's fields `null` before its first run, and
/// `last_error` unless that run's create was refused.
pub fn schedule(s: &Schedule) -> Value {
    json!({
        "id": s.id,
        "username": s.username,
        "at": s.at,
        "days": s.days,
        "timezone": s.timezone,
        "template": non_empty(&s.template),
        "size": non_empty(&s.size),
        "org": non_empty(&s.org),
        "next_at": rfc3339_millis(s.next_at.as_ref()),
        "created_at": rfc3339_millis(s.created_at.as_ref()),
        "last_run_at": rfc3339_millis(s.last_run_at.as_ref()),
        "last_session_id": non_empty(&s.last_session_id),
        "last_error": non_empty(&s.last_error),
    })
}

/// One kept disk as the server gave it: `id` is the session whose disk it
/// is; `size`, `org` and `vm_name` are `null` when empty, `size_gb` when
/// the module reported none, `restoring_session_id` unless a desktop is
/// being restored from it.
pub fn snapshot(s: &Snapshot) -> Value {
    json!({
        "id": s.id,
        "username": s.username,
        "template": s.template,
        "size": non_empty(&s.size),
        "org": non_empty(&s.org),
        "vm_name": non_empty(&s.vm_name),
        "created_at": rfc3339_millis(s.created_at.as_ref()),
        "size_gb": non_zero(s.size_gb),
        "restoring_session_id": non_empty(&s.restoring_session_id),
    })
}

/// Desktops and the resources they hold (memory in MiB).
fn amounts(a: &Amounts) -> Value {
    json!({
        "desktops": a.desktops,
        "cores": a.cores,
        "memory_mb": a.memory_mb,
    })
}

/// One warm pool. `restrained_until` is `null` unless failures hold the
/// pool back; `oldest_ready_age_ms` is `null` when none is ready.
pub fn pool(p: &Pool) -> Value {
    let ms = |d: Option<&prost_types::Duration>| d.map(|d| millis(duration(Some(d))));
    json!({
        "name": p.name,
        "template": non_empty(&p.template),
        "desired": p.desired,
        "ready": p.ready,
        "provisioning": p.provisioning,
        "claimed_today": p.claimed_today,
        "failures": p.failures,
        "restrained_until": rfc3339_millis(p.restrained_until.as_ref()),
        "last_failure": non_empty(&p.last_failure),
        "oldest_ready_age_ms": ms(p.oldest_ready_age.as_ref()),
        "max_age_ms": ms(p.max_age.as_ref()),
    })
}

/// One node of the cluster. `state` is `online`, `offline` or
/// `maintenance` (`null` when unset); memory is in MiB; `seen_at` is
/// `null` when no report listed it, `offline_since` unless it is offline.
pub fn node(n: &Node) -> Value {
    json!({
        "name": n.name,
        "state": node_state(n.state()),
        "drained": n.drained,
        "listed": n.listed,
        "seen_at": rfc3339_millis(n.seen_at.as_ref()),
        "cpus": n.cpus,
        "memory_mb": n.memory_mb,
        "used_memory_mb": n.used_memory_mb,
        "configured_memory_mb": n.configured_memory_mb,
        "configured_cores": n.configured_cores,
        "templates": n.templates,
        "template_storage": n.template_storage,
        "desktops": n.desktops,
        "pool_desktops": n.pool_desktops,
        "clones": n.clones,
        "offline_since": rfc3339_millis(n.offline_since.as_ref()),
    })
}

fn node_state(state: NodeState) -> Option<&'static str> {
    match state {
        NodeState::Unspecified => None,
        NodeState::Online => Some("online"),
        NodeState::Offline => Some("offline"),
        NodeState::Maintenance => Some("maintenance"),
    }
}

/// One entry of the audit trail, with the keys of the server's audit file;
/// fields the server left empty are `null`.
pub fn audit_entry(e: &AuditEntry) -> Value {
    json!({
        "time": rfc3339_millis(e.time.as_ref()),
        "actor": non_empty(&e.actor),
        "subject": non_empty(&e.subject),
        "fingerprint": non_empty(&e.fingerprint),
        "peer": non_empty(&e.peer),
        "action": e.action,
        "session_id": non_empty(&e.session_id),
        "owner": non_empty(&e.owner),
        "result": e.result,
        "detail": non_empty(&e.detail),
        "org": non_empty(&e.org),
    })
}

/// One event of a session's history; `stage_change`, `output` and `session`
/// appear only when the event has them.
pub fn event(e: &SessionEvent) -> Value {
    let mut value = json!({
        "session_id": e.session_id,
        "sequence": e.sequence,
        "time": rfc3339_millis(e.time.as_ref()),
        "state": e.state().label(),
        "stage_elapsed_ms": millis(duration(e.stage_elapsed.as_ref())),
    });
    if let Value::Object(fields) = &mut value {
        match &e.kind {
            Some(Kind::StageChange(change)) => {
                fields.insert(
                    "stage_change".into(),
                    json!({
                        "previous": state(change.previous()),
                        "previous_duration_ms": millis(duration(change.previous_duration.as_ref())),
                        "message": change.message,
                    }),
                );
            }
            Some(Kind::Output(line)) => {
                fields.insert(
                    "output".into(),
                    json!({
                        "tool": tool_name(line.tool()),
                        "stream": stream_name(line.stream()),
                        "text": line.text,
                    }),
                );
            }
            Some(Kind::IdleWarning(warning)) => {
                fields.insert(
                    "idle_warning".into(),
                    json!({
                        "reap_at": rfc3339_millis(warning.reap_at.as_ref()),
                        "reason": warning.reason,
                    }),
                );
            }
            None => {}
        }
        if let Some(s) = &e.session {
            fields.insert("session".into(), session(s));
        }
    }
    value
}

/// The lower-case name of a tool, e.g. `terraform`; `null` when unset.
pub fn tool_name(tool: Tool) -> Option<&'static str> {
    match tool {
        Tool::Unspecified => None,
        Tool::Terraform => Some("terraform"),
        Tool::Ssh => Some("ssh"),
        Tool::Ansible => Some("ansible"),
        Tool::Agent => Some("agent"),
    }
}

fn stream_name(stream: OutputStream) -> Option<&'static str> {
    match stream {
        OutputStream::Unspecified => None,
        OutputStream::Stdout => Some("stdout"),
        OutputStream::Stderr => Some("stderr"),
    }
}

/// A state label, `null` for UNSPECIFIED.
fn state(s: SessionState) -> Option<&'static str> {
    (s != SessionState::Unspecified).then(|| s.label())
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn non_zero(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use daas_api::v1::{Failure, OutputLine, StageChange};

    pub(crate) fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    pub(crate) fn ms(millis: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration {
            seconds: millis / 1000,
            nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
        })
    }

    pub(crate) fn ready_session() -> Session {
        Session {
            id: "3f0c".into(),
            username: "alice".into(),
            session_user: String::new(),
            template: "debian-12".into(),
            state: SessionState::Ready as i32,
            vm_name: "desktop-ab12cd".into(),
            vm_id: "104".into(),
            rdp_host: "10.0.0.5".into(),
            rdp_port: 3389,
            ssh_host: "10.0.0.5".into(),
            ssh_port: 22,
            created_at: ts(1_700_000_000),
            updated_at: ts(1_700_000_090),
            ready_at: ts(1_700_000_090),
            failure: None,
            activity: None,
            pool: String::new(),
            node: String::new(),
            size: Some(Size {
                name: "medium".into(),
                cores: 2,
                memory_mb: 4096,
                disk_gb: 20,
            }),
            org: String::new(),
            restored_from: String::new(),
        }
    }

    /// alice's desktop READY at 08:00 on weekdays in Paris, next on Monday
    /// 2026-12-07 (07:00 UTC), added the Friday before; it never ran.
    pub(crate) fn weekdays_in_paris() -> Schedule {
        Schedule {
            id: "0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10".into(),
            username: "alice".into(),
            at: "08:00".into(),
            days: "mon-fri".into(),
            timezone: "Europe/Paris".into(),
            template: "debian-12".into(),
            size: "medium".into(),
            org: String::new(),
            next_at: ts(1_796_626_800),
            created_at: ts(1_796_378_400),
            last_run_at: None,
            last_session_id: String::new(),
            last_error: String::new(),
        }
    }

    /// An online node with desktops, pool desktops and a clone on it.
    pub(crate) fn pve2() -> Node {
        Node {
            name: "pve2".into(),
            state: NodeState::Online as i32,
            drained: false,
            listed: true,
            seen_at: ts(1_700_000_000),
            cpus: 32,
            memory_mb: 128 * 1024,
            used_memory_mb: 30 * 1024,
            configured_memory_mb: 48 * 1024,
            configured_cores: 24,
            templates: vec!["debian-12".into(), "ubuntu-24".into()],
            template_storage: [("ubuntu-24".to_string(), "ceph-pool".to_string())].into(),
            desktops: 7,
            pool_desktops: 2,
            clones: 1,
            offline_since: None,
        }
    }

    #[test]
    fn an_event_with_a_stage_change() {
        let e = SessionEvent {
            session_id: "3f0c".into(),
            sequence: 2,
            time: ts(1_700_000_001),
            state: SessionState::Provisioning as i32,
            stage_elapsed: ms(0),
            kind: Some(Kind::StageChange(StageChange {
                previous: SessionState::Queued as i32,
                previous_duration: ms(1_500),
                message: "creating the VM".into(),
            })),
            session: None,
        };
        assert_eq!(
            event(&e),
            json!({
                "session_id": "3f0c",
                "sequence": 2,
                "time": "2023-11-14T22:13:21.000Z",
                "state": "PROVISIONING",
                "stage_elapsed_ms": 0,
                "stage_change": {
                    "previous": "QUEUED",
                    "previous_duration_ms": 1500,
                    "message": "creating the VM",
                },
            })
        );
    }

    #[test]
    fn the_first_stage_change_has_no_previous_state() {
        let e = SessionEvent {
            sequence: 1,
            state: SessionState::Queued as i32,
            kind: Some(Kind::StageChange(StageChange::default())),
            ..SessionEvent::default()
        };
        assert_eq!(event(&e)["stage_change"]["previous"], Value::Null);
        assert_eq!(event(&e)["time"], Value::Null);
    }

    #[test]
    fn an_event_with_an_output_line() {
        let e = SessionEvent {
            session_id: "3f0c".into(),
            sequence: 5,
            time: ts(1_700_000_003),
            state: SessionState::Provisioning as i32,
            stage_elapsed: ms(2_250),
            kind: Some(Kind::Output(OutputLine {
                tool: Tool::Terraform as i32,
                stream: OutputStream::Stdout as i32,
                text: "Apply complete!".into(),
            })),
            session: None,
        };
        let v = event(&e);
        assert_eq!(v["stage_elapsed_ms"], 2250);
        assert_eq!(
            v["output"],
            json!({"tool": "terraform", "stream": "stdout", "text": "Apply complete!"})
        );
        assert!(v.get("stage_change").is_none());
        assert!(v.get("session").is_none());
    }

    #[test]
    fn a_final_event_carries_the_session() {
        let e = SessionEvent {
            session_id: "3f0c".into(),
            sequence: 9,
            time: ts(1_700_000_090),
            state: SessionState::Ready as i32,
            stage_elapsed: ms(0),
            kind: Some(Kind::StageChange(StageChange {
                previous: SessionState::Configuring as i32,
                previous_duration: ms(40_000),
                message: String::new(),
            })),
            session: Some(ready_session()),
        };
        let v = event(&e);
        assert_eq!(v["state"], "READY");
        assert_eq!(
            v["session"],
            json!({
                "id": "3f0c",
                "username": "alice",
                "session_user": null,
                "template": "debian-12",
                "state": "READY",
                "vm_name": "desktop-ab12cd",
                "vm_id": "104",
                "rdp_host": "10.0.0.5",
                "rdp_port": 3389,
                "ssh_host": "10.0.0.5",
                "ssh_port": 22,
                "created_at": "2023-11-14T22:13:20.000Z",
                "updated_at": "2023-11-14T22:14:50.000Z",
                "ready_at": "2023-11-14T22:14:50.000Z",
                "failure": null,
                "activity": null,
                "pool": null,
                "node": null,
                "size": {"name": "medium", "cores": 2, "memory_mb": 4096, "disk_gb": 20},
                "org": null,
                "restored_from": null,
            })
        );
    }

    #[test]
    fn a_pool_desktop_names_its_pool() {
        let s = Session {
            pool: "lab".into(),
            ..ready_session()
        };
        assert_eq!(session(&s)["pool"], "lab");
    }

    #[test]
    fn an_organisations_desktop_names_it() {
        let s = Session {
            org: "physics".into(),
            ..ready_session()
        };
        assert_eq!(session(&s)["org"], "physics");
    }

    #[test]
    fn quotas() {
        let amounts = |desktops, cores, memory_mb| {
            Some(Amounts {
                desktops,
                cores,
                memory_mb,
                ..Default::default()
            })
        };
        let member = Quota {
            org: "physics".into(),
            org_title: "Physics".into(),
            org_max: amounts(2, 4, 8192),
            org_used: amounts(1, 2, 4096),
            username: "dave".into(),
            user_max: amounts(1, 0, 0),
            user_used: amounts(1, 2, 4096),
            administers: vec!["physics".into()],
        };
        assert_eq!(
            quota(&member),
            json!({
                "org": "physics",
                "org_title": "Physics",
                "org_max": {"desktops": 2, "cores": 4, "memory_mb": 8192},
                "org_used": {"desktops": 1, "cores": 2, "memory_mb": 4096},
                "username": "dave",
                "user_max": {"desktops": 1, "cores": 0, "memory_mb": 0},
                "user_used": {"desktops": 1, "cores": 2, "memory_mb": 4096},
                "administers": ["physics"],
            })
        );
        // In no organisation: the server's per-user limit only.
        let alone = Quota {
            username: "alice".into(),
            user_max: amounts(3, 0, 0),
            user_used: amounts(0, 0, 0),
            ..Quota::default()
        };
        let v = quota(&alone);
        for key in ["org", "org_title", "org_max", "org_used"] {
            assert_eq!(v[key], Value::Null, "{key}");
        }
        assert_eq!(
            v["user_max"],
            json!({"desktops": 3, "cores": 0, "memory_mb": 0})
        );
        assert_eq!(v["administers"], json!([]));
    }

    #[test]
    fn schedules() {
        assert_eq!(
            schedule(&weekdays_in_paris()),
            json!({
                "id": "0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10",
                "username": "alice",
                "at": "08:00",
                "days": "mon-fri",
                "timezone": "Europe/Paris",
                "template": "debian-12",
                "size": "medium",
                "org": null,
                "next_at": "2026-12-07T07:00:00.000Z",
                "created_at": "2026-12-04T10:00:00.000Z",
                "last_run_at": null,
                "last_session_id": null,
                "last_error": null,
            })
        );
        // Refused when it last ran, of the defaults, for an organisation.
        let refused = Schedule {
            template: String::new(),
            size: String::new(),
            org: "physics".into(),
            last_run_at: ts(1_796_624_400),
            last_error: "physics's quota of 2 desktops is reached".into(),
            ..weekdays_in_paris()
        };
        let v = schedule(&refused);
        assert_eq!(
            [&v["template"], &v["size"], &v["org"], &v["last_session_id"]],
            [&Value::Null, &Value::Null, &json!("physics"), &Value::Null]
        );
        assert_eq!(v["last_run_at"], "2026-12-07T06:20:00.000Z");
        assert_eq!(v["last_error"], "physics's quota of 2 desktops is reached");
    }

    /// alice's kept disk of a `notes` desktop, kept 2026-12-04T10:00:00Z.
    pub(crate) fn alices_notes() -> Snapshot {
        Snapshot {
            id: "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11".into(),
            username: "alice".into(),
            template: "notes".into(),
            size: "standard".into(),
            org: String::new(),
            vm_name: "desktop-ab12cd".into(),
            created_at: ts(1_796_378_400),
            size_gb: 20,
            restoring_session_id: String::new(),
        }
    }

    #[test]
    fn snapshots() {
        assert_eq!(
            snapshot(&alices_notes()),
            json!({
                "id": "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11",
                "username": "alice",
                "template": "notes",
                "size": "standard",
                "org": null,
                "vm_name": "desktop-ab12cd",
                "created_at": "2026-12-04T10:00:00.000Z",
                "size_gb": 20,
                "restoring_session_id": null,
            })
        );
        // Being restored, for an organisation, its size unknown.
        let restoring = Snapshot {
            org: "physics".into(),
            size_gb: 0,
            restoring_session_id: "9e01".into(),
            ..alices_notes()
        };
        let v = snapshot(&restoring);
        assert_eq!(
            [&v["org"], &v["size_gb"], &v["restoring_session_id"]],
            [&json!("physics"), &Value::Null, &json!("9e01")]
        );
    }

    #[test]
    fn a_restored_desktop_names_its_kept_disk() {
        let s = Session {
            restored_from: "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11".into(),
            ..ready_session()
        };
        assert_eq!(
            session(&s)["restored_from"],
            "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11"
        );
    }

    #[test]
    fn a_placed_desktop_names_its_node() {
        let s = Session {
            node: "pve2".into(),
            ..ready_session()
        };
        assert_eq!(session(&s)["node"], "pve2");
    }

    #[test]
    fn nodes() {
        assert_eq!(
            node(&pve2()),
            json!({
                "name": "pve2",
                "state": "online",
                "drained": false,
                "listed": true,
                "seen_at": "2023-11-14T22:13:20.000Z",
                "cpus": 32,
                "memory_mb": 131_072,
                "used_memory_mb": 30_720,
                "configured_memory_mb": 49_152,
                "configured_cores": 24,
                "templates": ["debian-12", "ubuntu-24"],
                "template_storage": {"ubuntu-24": "ceph-pool"},
                "desktops": 7,
                "pool_desktops": 2,
                "clones": 1,
                "offline_since": null,
            })
        );
        let gone = Node {
            name: "pve3".into(),
            state: NodeState::Offline as i32,
            drained: true,
            offline_since: ts(1_700_000_000),
            ..Node::default()
        };
        let v = node(&gone);
        assert_eq!(
            (&v["state"], &v["drained"], &v["listed"], &v["seen_at"]),
            (&json!("offline"), &json!(true), &json!(false), &Value::Null)
        );
        assert_eq!(v["offline_since"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["templates"], json!([]));
        assert_eq!(v["template_storage"], json!({}));
        assert_eq!(node(&Node::default())["state"], Value::Null);
    }

    #[test]
    fn pools() {
        let p = Pool {
            name: "lab".into(),
            template: "debian-12".into(),
            desired: 5,
            ready: 3,
            provisioning: 2,
            claimed_today: 14,
            failures: 1,
            restrained_until: None,
            last_failure: "ansible failed".into(),
            oldest_ready_age: ms(754_250),
            max_age: ms(14_400_000),
        };
        assert_eq!(
            pool(&p),
            json!({
                "name": "lab",
                "template": "debian-12",
                "desired": 5,
                "ready": 3,
                "provisioning": 2,
                "claimed_today": 14,
                "failures": 1,
                "restrained_until": null,
                "last_failure": "ansible failed",
                "oldest_ready_age_ms": 754_250,
                "max_age_ms": 14_400_000,
            })
        );
        let restrained = Pool {
            name: "gpu".into(),
            restrained_until: ts(1_700_000_000),
            ..Pool::default()
        };
        let v = pool(&restrained);
        assert_eq!(v["restrained_until"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["template"], Value::Null);
        assert_eq!(v["last_failure"], Value::Null);
        assert_eq!(v["oldest_ready_age_ms"], Value::Null);
        assert_eq!(v["max_age_ms"], Value::Null);
    }

    #[test]
    fn audit_entries() {
        let refused = AuditEntry {
            time: ts(1_700_000_000),
            actor: "bob".into(),
            subject: "CN=bob".into(),
            fingerprint: "ab12".into(),
            peer: "127.0.0.1:40000".into(),
            action: "destroy".into(),
            session_id: "3f0c".into(),
            owner: "alice".into(),
            result: "PERMISSION_DENIED".into(),
            detail: "you may destroy only your own sessions".into(),
            org: "physics".into(),
        };
        assert_eq!(
            audit_entry(&refused),
            json!({
                "time": "2023-11-14T22:13:20.000Z",
                "actor": "bob",
                "subject": "CN=bob",
                "fingerprint": "ab12",
                "peer": "127.0.0.1:40000",
                "action": "destroy",
                "session_id": "3f0c",
                "owner": "alice",
                "result": "PERMISSION_DENIED",
                "detail": "you may destroy only your own sessions",
                "org": "physics",
            })
        );
        let reap = AuditEntry {
            actor: "reaper".into(),
            action: "reap".into(),
            result: "OK".into(),
            ..AuditEntry::default()
        };
        let v = audit_entry(&reap);
        assert_eq!(
            (&v["actor"], &v["action"]),
            (&json!("reaper"), &json!("reap"))
        );
        for key in [
            "time",
            "subject",
            "fingerprint",
            "peer",
            "session_id",
            "owner",
            "detail",
            "org",
        ] {
            assert_eq!(v[key], Value::Null, "{key}");
        }
    }

    #[test]
    fn a_failed_session_has_its_failure() {
        let s = Session {
            state: SessionState::Failed as i32,
            failure: Some(Failure {
                stage: SessionState::Provisioning as i32,
                reason: "terraform apply failed".into(),
            }),
            ..Session::default()
        };
        assert_eq!(
            session(&s)["failure"],
            json!({"stage": "PROVISIONING", "reason": "terraform apply failed"})
        );
    }
}
