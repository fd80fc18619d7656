//! Rows and records: how a row of `sessions`, `audit` or `web_signins`
//! becomes the record the server works with. Events are stored as the
//! embedded store stores them (see `crate::store::event_rows`).

use tokio_postgres::Row;

use crate::store::{
    ActivityRecord, ChildRecord, SessionRecord, VmOutputs, audit_records::AuditRecord,
    signins::SignInRecord, state_from_db,
};

/// The columns [`session_from_row`] reads, for `SELECT {SESSION_COLUMNS}`.
pub(super) const SESSION_COLUMNS: &str = "id, username, login_user, template, state, slot, \
     vm_name, vm_id, ssh_host, ssh_port, rdp_host, rdp_port, failure_stage, failure_reason, \
     child_pgid, child_identity, created_ms, updated_ms, ready_ms, last_report_ms, \
     last_input_ms, last_connected_ms, rdp_clients, logged_in, agent_version, warned_reap_ms, \
     pool, claimed_ms, rdp_cert_sha256, node, size, cores, memory_mb, disk_gb, org, restore_from";

fn port(value: i32) -> u16 {
    u16::try_from(value).unwrap_or(0)
}

fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

pub(super) fn session_from_row(row: &Row) -> Result<SessionRecord, tokio_postgres::Error> {
    let failure_stage: i32 = row.try_get("failure_stage")?;
    let failure_reason: String = row.try_get("failure_reason")?;
    let users: String = row.try_get("logged_in")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        session_user: row.try_get("login_user")?,
        template: row.try_get("template")?,
        state: state_from_db(row.try_get("state")?),
        slot: count(row.try_get("slot")?),
        vm_name: row.try_get("vm_name")?,
        outputs: VmOutputs {
            vm_id: row.try_get("vm_id")?,
            ssh_host: row.try_get("ssh_host")?,
            ssh_port: port(row.try_get("ssh_port")?),
            rdp_host: row.try_get("rdp_host")?,
            rdp_port: port(row.try_get("rdp_port")?),
            rdp_cert_sha256: row.try_get("rdp_cert_sha256")?,
        },
        failure: (failure_stage != 0).then(|| (state_from_db(failure_stage), failure_reason)),
        child: match (row.try_get("child_pgid")?, row.try_get("child_identity")?) {
            (Some(pgid), Some(identity)) => Some(ChildRecord { pgid, identity }),
            _ => None,
        },
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        ready_ms: row.try_get("ready_ms")?,
        activity: ActivityRecord {
            last_report_ms: row.try_get("last_report_ms")?,
            last_input_ms: row.try_get("last_input_ms")?,
            last_connected_ms: row.try_get("last_connected_ms")?,
            rdp_clients: count(row.try_get("rdp_clients")?),
            users: serde_json::from_str(&users).unwrap_or_default(),
            agent_version: row.try_get("agent_version")?,
            warned_reap_ms: row.try_get("warned_reap_ms")?,
        },
        pool: row.try_get("pool")?,
        claimed_ms: row.try_get("claimed_ms")?,
        node: row.try_get("node")?,
        size: crate::store::size_from_columns(
            row.try_get("size")?,
            row.try_get("cores")?,
            row.try_get("memory_mb")?,
            row.try_get("disk_gb")?,
        ),
        org: row.try_get("org")?,
        restore_from: row.try_get("restore_from")?,
    })
}

/// A row of `audit`, selected with all its columns by name.
pub(super) fn audit_from_row(row: &Row) -> Result<AuditRecord, tokio_postgres::Error> {
    Ok(AuditRecord {
        id: row.try_get("id")?,
        time_ms: row.try_get("time_ms")?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        fingerprint: row.try_get("fingerprint")?,
        peer: row.try_get("peer")?,
        action: row.try_get("action")?,
        session_id: row.try_get("session_id")?,
        owner: row.try_get("owner")?,
        result: row.try_get("result")?,
        detail: row.try_get("detail")?,
        org: row.try_get("org")?,
    })
}

/// The columns [`signin_from_row`] reads.
pub(super) const SIGNIN_COLUMNS: &str =
    "id_hash, username, admin, csrf, key, created_ms, last_seen_ms, checked_ms, groups";

pub(super) fn signin_from_row(row: &Row) -> Result<SignInRecord, tokio_postgres::Error> {
    Ok(SignInRecord {
        id_hash: row.try_get("id_hash")?,
        user: row.try_get("username")?,
        admin: row.try_get("admin")?,
        csrf: row.try_get("csrf")?,
        key: row.try_get("key")?,
        created_ms: row.try_get("created_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        checked_ms: row.try_get("checked_ms")?,
        groups: serde_json::from_str(row.try_get("groups")?).unwrap_or_default(),
    })
}
