//! Rows and records: how a row of `sessions`, `audit` or `web_signins`
//! becomes the record the server works with (events are stored as every
//! backend stores them: `crate::store::event_rows`).

use rusqlite::Row;

use crate::store::{
    ActivityRecord, ChildRecord, SessionRecord, VmOutputs, audit_records::AuditRecord,
    signins::SignInRecord, state_from_db,
};

/// The columns [`session_from_row`] reads, for `SELECT {SESSION_COLUMNS}`.
pub(super) const SESSION_COLUMNS: &str = "id, username, session_user, template, state, slot, vm_name, \
     vm_id, ssh_host, ssh_port, rdp_host, rdp_port, failure_stage, failure_reason, child_pgid, \
     child_identity, created_ms, updated_ms, ready_ms, last_report_ms, last_input_ms, \
     last_connected_ms, rdp_clients, logged_in, agent_version, warned_reap_ms, pool, claimed_ms, \
     rdp_cert_sha256, node, size, cores, memory_mb, disk_gb, org, restore_from";

pub(super) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let failure_stage: i32 = row.get("failure_stage")?;
    let failure_reason: String = row.get("failure_reason")?;
    let users: String = row.get("logged_in")?;
    Ok(SessionRecord {
        id: row.get("id")?,
        username: row.get("username")?,
        session_user: row.get("session_user")?,
        template: row.get("template")?,
        state: state_from_db(row.get("state")?),
        slot: row.get("slot")?,
        vm_name: row.get("vm_name")?,
        outputs: VmOutputs {
            vm_id: row.get("vm_id")?,
            ssh_host: row.get("ssh_host")?,
            ssh_port: row.get("ssh_port")?,
            rdp_host: row.get("rdp_host")?,
            rdp_port: row.get("rdp_port")?,
            rdp_cert_sha256: row.get("rdp_cert_sha256")?,
        },
        failure: (failure_stage != 0).then(|| (state_from_db(failure_stage), failure_reason)),
        child: match (row.get("child_pgid")?, row.get("child_identity")?) {
            (Some(pgid), Some(identity)) => Some(ChildRecord { pgid, identity }),
            _ => None,
        },
        created_ms: row.get("created_ms")?,
        updated_ms: row.get("updated_ms")?,
        ready_ms: row.get("ready_ms")?,
        activity: ActivityRecord {
            last_report_ms: row.get("last_report_ms")?,
            last_input_ms: row.get("last_input_ms")?,
            last_connected_ms: row.get("last_connected_ms")?,
            rdp_clients: row.get("rdp_clients")?,
            users: serde_json::from_str(&users).unwrap_or_default(),
            agent_version: row.get("agent_version")?,
            warned_reap_ms: row.get("warned_reap_ms")?,
        },
        pool: row.get("pool")?,
        claimed_ms: row.get("claimed_ms")?,
        node: row.get("node")?,
        size: crate::store::size_from_columns(
            row.get("size")?,
            row.get("cores")?,
            row.get("memory_mb")?,
            row.get("disk_gb")?,
        ),
        org: row.get("org")?,
        restore_from: row.get("restore_from")?,
    })
}

/// A row of `audit`, selected with all its columns by name.
pub(super) fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get("id")?,
        time_ms: row.get("time_ms")?,
        actor: row.get("actor")?,
        subject: row.get("subject")?,
        fingerprint: row.get("fingerprint")?,
        peer: row.get("peer")?,
        action: row.get("action")?,
        session_id: row.get("session_id")?,
        owner: row.get("owner")?,
        result: row.get("result")?,
        detail: row.get("detail")?,
        org: row.get("org")?,
    })
}

/// A row of `web_signins`, selected as `id_hash, user, admin, csrf, key,
/// created_ms, last_seen_ms, checked_ms, groups`.
pub(super) fn signin_from_row(row: &Row<'_>) -> rusqlite::Result<SignInRecord> {
    Ok(SignInRecord {
        id_hash: row.get(0)?,
        user: row.get(1)?,
        admin: row.get(2)?,
        csrf: row.get(3)?,
        key: row.get(4)?,
        created_ms: row.get(5)?,
        last_seen_ms: row.get(6)?,
        checked_ms: row.get(7)?,
        groups: serde_json::from_str(&row.get::<_, String>(8)?).unwrap_or_default(),
    })
}
