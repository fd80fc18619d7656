//! Text for humans: durations, stage lines, the session table and details,
//! the warm pool table, the cluster's nodes, the audit trail, quotas,
//! schedules, kept disks.

use std::time::{Duration, SystemTime};

use daas_api::v1::{
    Activity, Amounts, AuditEntry, ListTemplatesResponse, Node, NodeState, Pool, Quota, Schedule,
    Session, SessionState, Snapshot,
};
use jiff::tz::TimeZone;

use crate::error::one_line;
use crate::timestamps::{
    duration, rfc3339_seconds, since, system_time, utc_time_of_day, wall_time,
};

/// Width of the state column of stage lines (the longest label).
const STAGE_WIDTH: usize = 12;

/// A stage's duration: `0.4s`, `12.3s`, `4m05s`, `1h02m`.
pub fn stage_duration(d: Duration) -> String {
    let tenths = d.as_millis() / 100;
    let secs = d.as_secs();
    if secs < 60 {
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// A coarse age: `45s`, `12m`, `3h`, `2d`.
pub fn age(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The line printed when a stage ends, e.g. `✔ PROVISIONING  12.3s`.
pub fn stage_done(stage: SessionState, took: Duration, ok: bool) -> String {
    let mark = if ok { '✔' } else { '✘' };
    format!(
        "{mark} {:<STAGE_WIDTH$} {:>6}",
        stage.label(),
        stage_duration(took)
    )
}

/// The line printed when a stage starts (when there is no spinner).
pub fn stage_started(stage: SessionState, message: &str) -> String {
    if message.is_empty() {
        format!("▸ {}", stage.label())
    } else {
        format!("▸ {:<STAGE_WIDTH$}  {message}", stage.label())
    }
}

/// A tool's output line, e.g. `terraform| Apply complete!`.
pub fn output_line(tool: Option<&str>, text: &str) -> String {
    format!("{}| {text}", tool.unwrap_or("output"))
}

/// `rdp://HOST:PORT`, once the desktop has an address.
pub fn rdp_url(s: &Session) -> Option<String> {
    if s.rdp_host.is_empty() {
        return None;
    }
    let port = if s.rdp_port == 0 { 3389 } else { s.rdp_port };
    Some(if s.rdp_host.contains(':') {
        format!("rdp://[{}]:{port}", s.rdp_host)
    } else {
        format!("rdp://{}:{port}", s.rdp_host)
    })
}

/// What to print when a session is READY.
pub fn ready(s: &Session) -> String {
    let vm = dash(&s.vm_name);
    let head = match rdp_url(s) {
        Some(url) => format!("Desktop ready: {url}  (session {}, vm {vm})", s.id),
        None => format!(
            "Desktop ready, but the server gave no RDP address  (session {}, vm {vm})",
            s.id
        ),
    };
    let mut lines = vec![head];
    lines.extend(pool_origin(s));
    if !s.restored_from.is_empty() {
        lines.push(format!(
            "restored from: {} (the disk kept when that desktop was destroyed)",
            s.restored_from
        ));
    }
    lines.push(format!("Details: daas show {}", s.id));
    lines.join("\n")
}

/// `failed in STAGE: REASON`, from the session's failure.
pub fn failure(s: &Session) -> (&'static str, String) {
    match &s.failure {
        Some(f) => (
            f.stage().label(),
            if f.reason.is_empty() {
                "no reason given".to_owned()
            } else {
                f.reason.clone()
            },
        ),
        None => ("an unknown stage", "no reason given".to_owned()),
    }
}

/// The sessions as a table with a header: ID, USER, ORG (only when a
/// session has an organisation), STATE, VM, RDP, AGE.
pub fn session_table(sessions: &[Session], now: SystemTime) -> String {
    let header = ["ID", "USER", "ORG", "STATE", "VM", "RDP", "AGE"].map(String::from);
    let rows = sessions.iter().map(|s| {
        [
            s.id.clone(),
            user(s),
            dash(&s.org).to_owned(),
            s.state().label().to_owned(),
            dash(&s.vm_name).to_owned(),
            if s.rdp_host.is_empty() {
                "-".to_owned()
            } else {
                format!("{}:{}", s.rdp_host, s.rdp_port)
            },
            system_time(s.created_at.as_ref())
                .map(|t| age(since(t, now)))
                .unwrap_or_else(|| "-".to_owned()),
        ]
    });
    let with_org = sessions.iter().any(|s| !s.org.is_empty());
    table_without(header, rows, (!with_org).then_some(2))
}

/// Who a session is for: its user, `(pool NAME)` for a warm pool's
/// desktop nobody has claimed yet, else `-`.
fn user(s: &Session) -> String {
    match (s.username.is_empty(), s.pool.is_empty()) {
        (false, _) => s.username.clone(),
        (true, false) => format!("(pool {})", s.pool),
        (true, true) => "-".to_owned(),
    }
}

/// Where a session's desktop came from, when a warm pool built it:
/// `from warm pool 'lab': ready 0.8s after the request` for a claimed one
/// (it was created when claimed), `waiting in warm pool 'lab', unclaimed`
/// for one nobody has claimed yet. `None` for a desktop built for its request.
fn pool_origin(s: &Session) -> Option<String> {
    if s.pool.is_empty() {
        return None;
    }
    if s.username.is_empty() {
        return Some(format!("waiting in warm pool '{}', unclaimed", s.pool));
    }
    let took = match (
        system_time(s.created_at.as_ref()),
        system_time(s.ready_at.as_ref()),
    ) {
        (Some(created), Some(ready)) => ready.duration_since(created).ok(),
        _ => None,
    };
    Some(match took {
        Some(took) => format!(
            "from warm pool '{}': ready {} after the request",
            s.pool,
            stage_duration(took)
        ),
        None => format!("from warm pool '{}'", s.pool),
    })
}

/// The warm pools as a table with a header: POOL, TEMPLATE, DESIRED, READY,
/// BUILDING, CLAIMED-TODAY, FAILURES, OLDEST-READY, STATUS.
pub fn pool_table(pools: &[Pool]) -> String {
    let header = [
        "POOL",
        "TEMPLATE",
        "DESIRED",
        "READY",
        "BUILDING",
        "CLAIMED-TODAY",
        "FAILURES",
        "OLDEST-READY",
        "STATUS",
    ]
    .map(String::from);
    let rows = pools.iter().map(|p| {
        [
            p.name.clone(),
            dash(&p.template).to_owned(),
            p.desired.to_string(),
            p.ready.to_string(),
            p.provisioning.to_string(),
            p.claimed_today.to_string(),
            p.failures.to_string(),
            p.oldest_ready_age
                .as_ref()
                .map(|d| age(duration(Some(d))))
                .unwrap_or_else(|| "-".to_owned()),
            pool_status(p),
        ]
    });
    table(header, rows)
}

/// `ok`, or `restrained until 10:02:33 UTC (last failure: REASON)` while
/// failures hold the pool back.
fn pool_status(p: &Pool) -> String {
    let Some(until) = p.restrained_until.as_ref() else {
        return "ok".to_owned();
    };
    let until = utc_time_of_day(Some(until)).map_or_else(
        || "restrained".to_owned(),
        |time| format!("restrained until {time} UTC"),
    );
    let reason = one_line(&p.last_failure);
    if reason.is_empty() {
        until
    } else {
        format!("{until} (last failure: {reason})")
    }
}

/// The cluster's nodes as a table with a header: NODE, STATE, DESKTOPS,
/// POOL (unclaimed pool desktops), CLONES, MEMORY (configured of total,
/// GiB), CPUS (configured cores of CPUs), TEMPLATES, SEEN (UTC, to the
/// second).
pub fn node_table(nodes: &[Node]) -> String {
    let header = [
        "NODE",
        "STATE",
        "DESKTOPS",
        "POOL",
        "CLONES",
        "MEMORY",
        "CPUS",
        "TEMPLATES",
        "SEEN",
    ]
    .map(String::from);
    let rows = nodes.iter().map(|n| {
        [
            n.name.clone(),
            node_state(n),
            n.desktops.to_string(),
            n.pool_desktops.to_string(),
            n.clones.to_string(),
            if n.memory_mb == 0 {
                "-".to_owned()
            } else {
                format!("{}/{} GiB", gib(n.configured_memory_mb), gib(n.memory_mb))
            },
            if n.cpus == 0 {
                "-".to_owned()
            } else {
                format!("{}/{}", n.configured_cores, n.cpus)
            },
            dash(&node_templates(n)).to_owned(),
            rfc3339_seconds(n.seen_at.as_ref()).unwrap_or_else(|| "-".to_owned()),
        ]
    });
    table(header, rows)
}

/// A node's templates, each with the storage its clones start from when
/// the server knows it: `debian-12@ceph-pool,ubuntu-24`.
fn node_templates(n: &Node) -> String {
    n.templates
        .iter()
        .map(|t| match n.template_storage.get(t) {
            Some(storage) => format!("{t}@{storage}"),
            None => t.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A node's state in lower case (`online`, `offline`, `maintenance`),
/// `offline (not listed)` when the module's last report left it out, then
/// `, drained` when an administrator drained it.
pub fn node_state(n: &Node) -> String {
    let state = match n.state() {
        _ if !n.listed => "offline (not listed)",
        NodeState::Online => "online",
        NodeState::Offline => "offline",
        NodeState::Maintenance => "maintenance",
        NodeState::Unspecified => "unknown",
    };
    if n.drained {
        format!("{state}, drained")
    } else {
        state.to_owned()
    }
}

/// The templates the caller may use: name (the default and the persistent
/// marked), title, OS, sizes (the default marked), warm pools and when the
/// reaper destroys its desktops.
pub fn template_table(answer: &ListTemplatesResponse) -> String {
    let header = ["TEMPLATE", "TITLE", "OS", "SIZES", "POOLS", "REAPED"].map(String::from);
    let rows = answer.templates.iter().map(|t| {
        let sizes = t
            .sizes
            .iter()
            .map(|s| {
                format!(
                    "{}{} ({}c/{}G/{}G)",
                    s.name,
                    if s.name == t.default_size { "*" } else { "" },
                    s.cores,
                    gib(s.memory_mb),
                    s.disk_gb
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let reaped = match (&t.idle_timeout, &t.max_lifetime) {
            (None, None) => "-".to_owned(),
            (idle, max) => format!(
                "idle {}, after {}",
                age(duration(idle.as_ref())),
                age(duration(max.as_ref()))
            ),
        };
        [
            format!(
                "{}{}{}",
                t.name,
                if t.name == answer.default_template {
                    "*"
                } else {
                    ""
                },
                if t.persistent { "+" } else { "" }
            ),
            dash(&t.title).to_owned(),
            dash(&t.os).to_owned(),
            sizes,
            if t.pools.is_empty() {
                "-".to_owned()
            } else {
                t.pools.join(", ")
            },
            reaped,
        ]
    });
    let mut text = table(header, rows);
    text.push_str("* the default; sizes are cores/memory GiB/disk GB\n");
    if answer.templates.iter().any(|t| t.persistent) {
        text.push_str(
            "+ keeps its disk: your next desktop of it restores it (`daas snapshot list`)\n",
        );
    }
    if answer.open {
        text.push_str(
            "no catalog on this server: any template the module knows goes, in the size shown\n",
        );
    }
    text
}

/// MiB as GiB: whole (`48`), else to a tenth (`1.5`).
fn gib(mb: u64) -> String {
    let tenths = mb.saturating_mul(10).saturating_add(512) / 1024;
    if tenths.is_multiple_of(10) {
        (tenths / 10).to_string()
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// What a drain or a resume of node `n` means, once done.
pub fn node_drained(n: &Node) -> String {
    if n.drained {
        format!(
            "{} is drained: it takes no new desktop; its users' desktops stay until they \
             end, its unclaimed pool desktops are replaced elsewhere",
            n.name
        )
    } else if n.listed && n.state() == NodeState::Online {
        format!("{} takes new desktops again", n.name)
    } else {
        format!(
            "{} is no longer drained: it takes new desktops again once it is online",
            n.name
        )
    }
}

/// The audit trail as a table with a header: TIME (UTC, to the second),
/// ACTOR, PEER, ACTION, SESSION, OWNER, ORG (only when an entry has an
/// organisation), RESULT, DETAIL; a refused call's method without its
/// package (`DesktopService/GetSession`).
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let header = [
        "TIME", "ACTOR", "PEER", "ACTION", "SESSION", "OWNER", "ORG", "RESULT", "DETAIL",
    ]
    .map(String::from);
    let rows = entries.iter().map(|e| {
        [
            rfc3339_seconds(e.time.as_ref()).unwrap_or_else(|| "-".to_owned()),
            dash(&e.actor).to_owned(),
            dash(&e.peer).to_owned(),
            dash(e.action.strip_prefix("daas.v1.").unwrap_or(&e.action)).to_owned(),
            dash(&e.session_id).to_owned(),
            dash(&e.owner).to_owned(),
            dash(&e.org).to_owned(),
            dash(&e.result).to_owned(),
            dash(&one_line(&e.detail)).to_owned(),
        ]
    });
    let with_org = entries.iter().any(|e| !e.org.is_empty());
    table_without(header, rows, (!with_org).then_some(6))
}

/// One amount of a quota's: how much (to tell 0, no limit in a maximum),
/// and as text.
type Amount = fn(&Amounts) -> (u64, String);

/// The amounts a quota counts, each with its row's label.
const AMOUNTS: [(&str, Amount); 3] = [
    ("desktops", |a| (a.desktops.into(), a.desktops.to_string())),
    ("vCPUs", |a| (a.cores.into(), a.cores.to_string())),
    ("memory", |a| {
        (a.memory_mb, format!("{} GiB", gib(a.memory_mb)))
    }),
];

/// What `daas quota` prints: the organisation (name and title) and the
/// member, then a row per amount (desktops, vCPUs, memory) with what is
/// used and the most allowed ("no limit" for 0), for the organisation and
/// the member (each only when the answer has it), then the organisations
/// the caller administers, if any.
pub fn quota(q: &Quota) -> String {
    let mut text = String::new();
    let org = if q.org.is_empty() {
        "none (the server's per-user limit applies)".to_owned()
    } else if q.org_title.is_empty() || q.org_title == q.org {
        q.org.clone()
    } else {
        format!("{} ({})", q.org, q.org_title)
    };
    text.push_str(&format!("organisation: {org}\n"));
    if !q.username.is_empty() {
        text.push_str(&format!("user:         {}\n", q.username));
    }
    text.push('\n');
    let amounts = |a: Option<&Amounts>| a.cloned().unwrap_or_default();
    let mut scopes = Vec::new();
    if !q.org.is_empty() {
        scopes.push((
            "ORG",
            amounts(q.org_used.as_ref()),
            amounts(q.org_max.as_ref()),
        ));
    }
    if !q.username.is_empty() || q.org.is_empty() {
        scopes.push((
            "USER",
            amounts(q.user_used.as_ref()),
            amounts(q.user_max.as_ref()),
        ));
    }
    let mut header = vec![String::new()];
    for (scope, _, _) in &scopes {
        header.extend([format!("{scope}-USED"), format!("{scope}-MAX")]);
    }
    let mut rows = vec![header];
    for (label, amount) in AMOUNTS {
        let mut row = vec![label.to_owned()];
        for (_, used, max) in &scopes {
            row.push(amount(used).1);
            row.push(match amount(max) {
                (0, _) => "no limit".to_owned(),
                (_, text) => text,
            });
        }
        rows.push(row);
    }
    text.push_str(&columns(&rows));
    if !q.administers.is_empty() {
        text.push_str(&format!("\nyou administer: {}\n", q.administers.join(", ")));
    }
    text
}

/// What `daas schedule add` prints: the schedule, one field per line, with
/// when its next desktop is due READY in its time zone and in `local` (the
/// caller's).
pub fn schedule_details(s: &Schedule, local: &TimeZone) -> String {
    let mut fields = vec![("id", s.id.clone()), ("user", dash(&s.username).to_owned())];
    if !s.org.is_empty() {
        fields.push(("organisation", s.org.clone()));
    }
    fields.extend([
        (
            "when",
            format!("{} {} ({})", s.at, s.days, dash(&s.timezone)),
        ),
        ("template", template_and_size(s)),
    ]);
    let next = s.next_at.as_ref();
    let in_its_zone = match TimeZone::get(&s.timezone) {
        Ok(zone) => wall_time(next, &zone, true).map(|t| format!("{t} ({})", s.timezone)),
        // A zone this machine's time zone database lacks: UTC.
        Err(_) => {
            rfc3339_seconds(next).map(|t| format!("{t} ({} is unknown here)", dash(&s.timezone)))
        }
    };
    fields.push(("next ready", in_its_zone.unwrap_or_else(|| "-".to_owned())));
    if let Some(here) = wall_time(next, local, true) {
        let name = local
            .iana_name()
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        fields.push(("local time", format!("{here}{name}")));
    }
    if let Some(ran) = rfc3339_seconds(s.last_run_at.as_ref()) {
        fields.push(("last run", format!("{ran}: {}", last_run(s))));
    }
    fields
        .into_iter()
        .map(|(name, value)| format!("{:<14}{value}\n", format!("{name}:")))
        .collect()
}

/// The schedules as a table with a header: ID, USER, AT, DAYS, TZ,
/// TEMPLATE (with the size), NEXT (in TZ, to the minute), LAST (see
/// [`last_run`]). USER only when a schedule is not `caller`'s: the user a
/// caller's certificate names when they are no administrator (`None`:
/// an administrator, or unknown).
pub fn schedule_table(schedules: &[Schedule], caller: Option<&str>) -> String {
    let header = ["ID", "USER", "AT", "DAYS", "TZ", "TEMPLATE", "NEXT", "LAST"].map(String::from);
    let rows = schedules.iter().map(|s| {
        let next = s.next_at.as_ref();
        [
            s.id.clone(),
            dash(&s.username).to_owned(),
            s.at.clone(),
            s.days.clone(),
            dash(&s.timezone).to_owned(),
            template_and_size(s),
            match TimeZone::get(&s.timezone) {
                Ok(zone) => wall_time(next, &zone, false),
                Err(_) => rfc3339_seconds(next),
            }
            .unwrap_or_else(|| "-".to_owned()),
            last_run(s),
        ]
    });
    let others = schedules
        .iter()
        .any(|s| caller != Some(s.username.as_str()));
    table_without(header, rows, (!others).then_some(1))
}

/// What a schedule's last run did: the session it made, `refused: WHY`,
/// or `-` before its first run.
fn last_run(s: &Schedule) -> String {
    if !s.last_error.is_empty() {
        format!("refused: {}", one_line(&s.last_error))
    } else {
        dash(&s.last_session_id).to_owned()
    }
}

/// `TEMPLATE (SIZE)`: `default` when the schedule names no template, no
/// `(SIZE)` when it names no size (the template's default).
fn template_and_size(s: &Schedule) -> String {
    let template = if s.template.is_empty() {
        "default"
    } else {
        &s.template
    };
    if s.size.is_empty() {
        template.to_owned()
    } else {
        format!("{template} ({})", s.size)
    }
}

/// The kept disks as a table with a header: ID, USER, TEMPLATE (with the
/// size), KEPT (UTC, to the second), SIZE (GB on the hypervisor's storage),
/// VM, RESTORING (the desktop being restored from it). USER only when a
/// disk is not `caller`'s (as [`schedule_table`]); RESTORING only when a
/// desktop is being restored from one.
pub fn snapshot_table(snapshots: &[Snapshot], caller: Option<&str>) -> String {
    let header = ["ID", "USER", "TEMPLATE", "KEPT", "SIZE", "VM", "RESTORING"].map(String::from);
    let rows = snapshots.iter().map(|s| {
        [
            s.id.clone(),
            dash(&s.username).to_owned(),
            with_size(&s.template, &s.size),
            rfc3339_seconds(s.created_at.as_ref()).unwrap_or_else(|| "-".to_owned()),
            if s.size_gb == 0 {
                "-".to_owned()
            } else {
                format!("{} GB", s.size_gb)
            },
            dash(&s.vm_name).to_owned(),
            dash(&s.restoring_session_id).to_owned(),
        ]
    });
    let others = snapshots
        .iter()
        .any(|s| caller != Some(s.username.as_str()));
    let restoring = snapshots.iter().any(|s| !s.restoring_session_id.is_empty());
    let mut skip = Vec::new();
    if !others {
        skip.push(1);
    }
    if !restoring {
        skip.push(6);
    }
    table_skipping(header, rows, &skip)
}

/// What `daas snapshot delete` prints.
pub fn snapshot_deleted(s: &Snapshot) -> String {
    let user = dash(&s.username);
    let template = dash(&s.template);
    format!(
        "deleted kept disk {}: {user}'s {template} disk (vm {}); {user}'s next {template} \
         desktop starts blank",
        s.id,
        dash(&s.vm_name),
    )
}

/// `TEMPLATE (SIZE)`, or `TEMPLATE` without a size.
fn with_size(template: &str, size: &str) -> String {
    if size.is_empty() {
        template.to_owned()
    } else {
        format!("{template} ({size})")
    }
}

/// What `daas schedule remove` prints.
pub fn schedule_removed(s: &Schedule) -> String {
    format!(
        "removed schedule {}: {}'s desktop at {} {} ({}); desktops it already made stay",
        s.id,
        dash(&s.username),
        s.at,
        s.days,
        dash(&s.timezone)
    )
}

/// Rows of cells under a header, each column as wide as its widest cell
/// plus two spaces; the last column is not padded.
fn table<const N: usize>(header: [String; N], rows: impl Iterator<Item = [String; N]>) -> String {
    table_without(header, rows, None)
}

/// [`table`] without column `skip`, when given.
fn table_without<const N: usize>(
    header: [String; N],
    rows: impl Iterator<Item = [String; N]>,
    skip: Option<usize>,
) -> String {
    table_skipping(header, rows, skip.as_slice())
}

/// [`table`] without the columns `skip`.
fn table_skipping<const N: usize>(
    header: [String; N],
    rows: impl Iterator<Item = [String; N]>,
    skip: &[usize],
) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(rows)
        .map(|row| {
            row.into_iter()
                .enumerate()
                .filter(|(i, _)| !skip.contains(i))
                .map(|(_, cell)| cell)
                .collect()
        })
        .collect();
    columns(&rows)
}

/// Rows of cells (the first one the header), each column as wide as its
/// widest cell plus two spaces; the last column is not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Every field of a session, one per line.
pub fn session_details(s: &Session, now: SystemTime) -> String {
    let when = |ts: Option<&prost_types::Timestamp>| match (rfc3339_seconds(ts), system_time(ts)) {
        (Some(text), Some(t)) => format!("{text}  ({} ago)", age(since(t, now))),
        _ => "-".to_owned(),
    };
    let endpoint = |host: &str, port: u32| {
        if host.is_empty() {
            "-".to_owned()
        } else {
            format!("{host}:{port}")
        }
    };
    let mut fields = vec![("id", s.id.clone()), ("user", dash(&s.username).to_owned())];
    if !s.org.is_empty() {
        fields.push(("organisation", s.org.clone()));
    }
    fields.extend([
        ("session user", dash(&s.session_user).to_owned()),
        ("template", dash(&s.template).to_owned()),
    ]);
    if !s.pool.is_empty() {
        let unclaimed = if s.username.is_empty() {
            " (unclaimed)"
        } else {
            ""
        };
        fields.push(("pool", format!("{}{unclaimed}", s.pool)));
    }
    if !s.restored_from.is_empty() {
        fields.push(("restored from", s.restored_from.clone()));
    }
    fields.extend([
        ("state", s.state().label().to_owned()),
        ("vm name", dash(&s.vm_name).to_owned()),
        ("vm id", dash(&s.vm_id).to_owned()),
    ]);
    if !s.node.is_empty() {
        fields.push(("node", s.node.clone()));
    }
    if let Some(size) = &s.size {
        fields.push((
            "size",
            format!(
                "{} ({} cores, {} GiB, {} GB disk)",
                size.name,
                size.cores,
                gib(size.memory_mb),
                size.disk_gb
            ),
        ));
    }
    fields.extend([
        ("rdp", rdp_url(s).unwrap_or_else(|| "-".to_owned())),
        ("ssh", endpoint(&s.ssh_host, s.ssh_port)),
        ("created", when(s.created_at.as_ref())),
        ("updated", when(s.updated_at.as_ref())),
        ("ready", when(s.ready_at.as_ref())),
    ]);
    if s.failure.is_some() {
        let (stage, reason) = failure(s);
        fields.push(("failure", format!("in {stage}: {reason}")));
    }
    if let Some(activity) = &s.activity {
        fields.push(("alive", why_alive(activity, now)));
    }
    // The values line up 14 columns in, one further with a longer name
    // (`restored from:`).
    let width = fields
        .iter()
        .map(|(name, _)| name.chars().count() + 2)
        .max()
        .unwrap_or_default()
        .max(14);
    fields
        .into_iter()
        .map(|(name, value)| format!("{:<width$}{value}\n", format!("{name}:")))
        .collect()
}

/// One line a person reads: the activity the agent saw and when (and
/// why) the reaper will destroy the desktop.
pub fn why_alive(a: &Activity, now: SystemTime) -> String {
    let ago = |ts: Option<&prost_types::Timestamp>| {
        system_time(ts).map(|t| format!("{} ago", age(since(t, now))))
    };
    let seen = match (
        ago(a.last_input_at.as_ref()),
        ago(a.last_report_at.as_ref()),
    ) {
        (Some(input), Some(report)) => {
            let clients = match a.rdp_clients {
                1 => "1 RDP client".to_owned(),
                n => format!("{n} RDP clients"),
            };
            format!("last input {input}, {clients}, last report {report}")
        }
        _ => "no report from the desktop's agent yet".to_owned(),
    };
    let until = |ts: Option<&prost_types::Timestamp>| {
        system_time(ts).map(|t| match t.duration_since(now) {
            Ok(left) => format!("in {}", age(left)),
            Err(_) => "now".to_owned(),
        })
    };
    match until(a.reap_at.as_ref()) {
        Some(when) => format!("{seen}; reaped {when} ({})", a.reap_reason),
        None => seen,
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::tests::{alices_notes, ms, pve2, ready_session, ts, weekdays_in_paris};
    use daas_api::v1::Failure;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn stage_durations() {
        assert_eq!(stage_duration(Duration::ZERO), "0.0s");
        assert_eq!(stage_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(stage_duration(Duration::from_millis(59_999)), "59.9s");
        assert_eq!(stage_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(stage_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_secs(45)), "45s");
        assert_eq!(age(Duration::from_secs(60 * 12 + 5)), "12m");
        assert_eq!(age(Duration::from_secs(3600 * 3)), "3h");
        assert_eq!(age(Duration::from_secs(86_400 * 2 + 7)), "2d");
    }

    #[test]
    fn stage_lines_line_up() {
        assert_eq!(
            stage_done(
                SessionState::Provisioning,
                Duration::from_millis(12_300),
                true
            ),
            "✔ PROVISIONING  12.3s"
        );
        assert_eq!(
            stage_done(SessionState::Queued, Duration::from_millis(400), true),
            "✔ QUEUED         0.4s"
        );
        assert_eq!(
            stage_done(SessionState::Configuring, Duration::from_secs(75), false),
            "✘ CONFIGURING   1m15s"
        );
        assert_eq!(
            output_line(Some("terraform"), "Apply complete!"),
            "terraform| Apply complete!"
        );
    }

    #[test]
    fn ready_line() {
        assert_eq!(
            ready(&ready_session()),
            "Desktop ready: rdp://10.0.0.5:3389  (session 3f0c, vm desktop-ab12cd)\nDetails: daas show 3f0c"
        );
    }

    /// `ready_session()` claimed from pool `lab` 0.8 s before it was ready.
    fn claimed_session() -> Session {
        Session {
            pool: "lab".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_089,
                nanos: 200_000_000,
            }),
            ..ready_session()
        }
    }

    #[test]
    fn a_claimed_desktop_says_how_fast_it_was_ready() {
        assert_eq!(
            ready(&claimed_session()),
            "Desktop ready: rdp://10.0.0.5:3389  (session 3f0c, vm desktop-ab12cd)\n\
             from warm pool 'lab': ready 0.8s after the request\n\
             Details: daas show 3f0c"
        );
    }

    #[test]
    fn pool_origins() {
        assert_eq!(pool_origin(&ready_session()), None);
        let unclaimed = Session {
            username: String::new(),
            ..claimed_session()
        };
        assert_eq!(
            pool_origin(&unclaimed).as_deref(),
            Some("waiting in warm pool 'lab', unclaimed")
        );
        // No timing without both times, nor from times out of order.
        let not_ready = Session {
            ready_at: None,
            ..claimed_session()
        };
        assert_eq!(
            pool_origin(&not_ready).as_deref(),
            Some("from warm pool 'lab'")
        );
        let skewed = Session {
            ready_at: ts(1_700_000_000),
            created_at: ts(1_700_000_001),
            ..claimed_session()
        };
        assert_eq!(
            pool_origin(&skewed).as_deref(),
            Some("from warm pool 'lab'")
        );
    }

    #[test]
    fn an_unclaimed_pool_desktop_is_listed_as_the_pools() {
        let unclaimed = Session {
            id: "9e01".into(),
            username: String::new(),
            ..claimed_session()
        };
        let orphan = Session {
            id: "5d2a".into(),
            state: SessionState::Queued as i32,
            ..Session::default()
        };
        let table = session_table(
            &[unclaimed, claimed_session(), orphan],
            at(1_700_000_000 + 125),
        );
        assert_eq!(
            table,
            "ID    USER        STATE   VM              RDP            AGE\n\
             9e01  (pool lab)  READY   desktop-ab12cd  10.0.0.5:3389  35s\n\
             3f0c  alice       READY   desktop-ab12cd  10.0.0.5:3389  35s\n\
             5d2a  -           QUEUED  -               -              -\n"
        );
    }

    #[test]
    fn details_name_the_pool() {
        let text = session_details(&claimed_session(), at(1_700_000_100));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3..6],
            [
                "template:     debian-12",
                "pool:         lab",
                "state:        READY"
            ]
        );
        let unclaimed = Session {
            username: String::new(),
            ..claimed_session()
        };
        let text = session_details(&unclaimed, at(1_700_000_100));
        assert!(text.contains("user:         -\n"), "{text}");
        assert!(text.contains("pool:         lab (unclaimed)\n"), "{text}");
        assert!(!session_details(&ready_session(), at(0)).contains("pool:"));
    }

    fn lab_pool() -> Pool {
        Pool {
            name: "lab".into(),
            template: "debian-12".into(),
            desired: 5,
            ready: 3,
            provisioning: 2,
            claimed_today: 14,
            failures: 0,
            restrained_until: None,
            last_failure: String::new(),
            oldest_ready_age: ms(754_000),
            max_age: ms(4 * 3_600_000),
        }
    }

    #[test]
    fn pool_table_layout() {
        let restrained = Pool {
            name: "gpu".into(),
            template: "ubuntu-24-cuda".into(),
            desired: 2,
            ready: 0,
            provisioning: 0,
            claimed_today: 0,
            failures: 3,
            restrained_until: ts(1_700_000_000),
            last_failure: "terraform apply failed:\n  no GPU left on node pve2".into(),
            oldest_ready_age: None,
            max_age: None,
        };
        assert_eq!(
            pool_table(&[lab_pool(), restrained]),
            "POOL  TEMPLATE        DESIRED  READY  BUILDING  CLAIMED-TODAY  FAILURES  \
             OLDEST-READY  STATUS\n\
             lab   debian-12       5        3      2         14             0         \
             12m           ok\n\
             gpu   ubuntu-24-cuda  2        0      0         0              3         \
             -             restrained until 22:13:20 UTC (last failure: terraform apply \
             failed: no GPU left on node pve2)\n"
        );
    }

    #[test]
    fn a_restrained_pool_without_a_reason() {
        let pool = Pool {
            failures: 3,
            restrained_until: ts(1_700_000_000 + 3_600),
            ..lab_pool()
        };
        assert_eq!(pool_status(&pool), "restrained until 23:13:20 UTC");
        assert_eq!(pool_status(&lab_pool()), "ok");
        assert_eq!(
            pool_table(&[]),
            "POOL  TEMPLATE  DESIRED  READY  BUILDING  CLAIMED-TODAY  FAILURES  OLDEST-READY  STATUS\n"
        );
    }

    #[test]
    fn node_table_layout() {
        let gone = Node {
            name: "pve3".into(),
            state: NodeState::Offline as i32,
            drained: true,
            listed: false,
            seen_at: ts(1_699_990_000),
            cpus: 0,
            memory_mb: 0,
            used_memory_mb: 0,
            configured_memory_mb: 0,
            configured_cores: 0,
            templates: Vec::new(),
            desktops: 1,
            pool_desktops: 0,
            clones: 0,
            offline_since: ts(1_699_990_000),
            template_storage: Default::default(),
        };
        let half = Node {
            name: "pve10".into(),
            state: NodeState::Maintenance as i32,
            configured_memory_mb: 1536,
            memory_mb: 16 * 1024,
            configured_cores: 1,
            cpus: 4,
            templates: vec!["debian-12".into()],
            template_storage: [("debian-12".to_string(), "pve10/local-lvm".to_string())].into(),
            seen_at: None,
            ..pve2()
        };
        assert_eq!(
            node_table(&[pve2(), gone, half]),
            "NODE   STATE                          DESKTOPS  POOL  CLONES  MEMORY      \
             CPUS   TEMPLATES                      SEEN\n\
             pve2   online                         7         2     1       48/128 GiB  \
             24/32  debian-12,ubuntu-24@ceph-pool  2023-11-14T22:13:20Z\n\
             pve3   offline (not listed), drained  1         0     0       -           \
             -      -                              2023-11-14T19:26:40Z\n\
             pve10  maintenance                    7         2     1       1.5/16 GiB  \
             1/4    debian-12@pve10/local-lvm      -\n"
        );
        assert_eq!(
            node_table(&[]),
            "NODE  STATE  DESKTOPS  POOL  CLONES  MEMORY  CPUS  TEMPLATES  SEEN\n"
        );
    }

    #[test]
    fn node_states() {
        let state = |state: NodeState, drained: bool, listed: bool| {
            node_state(&Node {
                state: state as i32,
                drained,
                listed,
                ..pve2()
            })
        };
        assert_eq!(state(NodeState::Online, false, true), "online");
        assert_eq!(state(NodeState::Online, true, true), "online, drained");
        assert_eq!(state(NodeState::Offline, false, true), "offline");
        assert_eq!(
            state(NodeState::Maintenance, true, true),
            "maintenance, drained"
        );
        assert_eq!(
            state(NodeState::Offline, false, false),
            "offline (not listed)"
        );
        assert_eq!(state(NodeState::Unspecified, false, true), "unknown");
    }

    #[test]
    fn memory_in_gib() {
        assert_eq!(gib(0), "0");
        assert_eq!(gib(48 * 1024), "48");
        assert_eq!(gib(1536), "1.5");
        assert_eq!(gib(2000), "2");
        assert_eq!(gib(100), "0.1");
        assert_eq!(gib(1024 * 1024), "1024");
    }

    #[test]
    fn what_a_drain_or_a_resume_means() {
        let drained = Node {
            drained: true,
            ..pve2()
        };
        assert_eq!(
            node_drained(&drained),
            "pve2 is drained: it takes no new desktop; its users' desktops stay until they \
             end, its unclaimed pool desktops are replaced elsewhere"
        );
        assert_eq!(node_drained(&pve2()), "pve2 takes new desktops again");
        let down = Node {
            state: NodeState::Offline as i32,
            ..pve2()
        };
        assert_eq!(
            node_drained(&down),
            "pve2 is no longer drained: it takes new desktops again once it is online"
        );
    }

    #[test]
    fn details_name_the_node() {
        let placed = Session {
            node: "pve2".into(),
            ..ready_session()
        };
        let text = session_details(&placed, at(1_700_000_100));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[6..9],
            [
                "vm id:        104",
                "node:         pve2",
                "size:         medium (2 cores, 4 GiB, 20 GB disk)"
            ]
        );
        assert!(!session_details(&ready_session(), at(0)).contains("node:"));
    }

    #[test]
    fn template_table_layout() {
        use daas_api::v1::{Size, Template};
        let size = |name: &str, cores, gib: u64| Size {
            name: name.into(),
            cores,
            memory_mb: gib * 1024,
            disk_gb: 20,
        };
        let answer = ListTemplatesResponse {
            templates: vec![
                Template {
                    name: "debian-12-xfce".into(),
                    title: "Debian 12 with XFCE".into(),
                    os: "Debian 12".into(),
                    sizes: vec![size("small", 1, 2), size("medium", 2, 4)],
                    default_size: "medium".into(),
                    ..Template::default()
                },
                Template {
                    name: "dev".into(),
                    sizes: vec![size("large", 4, 8)],
                    default_size: "large".into(),
                    pools: vec!["lab".into()],
                    persistent: true,
                    idle_timeout: Some(prost_types::Duration {
                        seconds: 1800,
                        nanos: 0,
                    }),
                    max_lifetime: Some(prost_types::Duration {
                        seconds: 12 * 3600,
                        nanos: 0,
                    }),
                    ..Template::default()
                },
            ],
            default_template: "debian-12-xfce".into(),
            open: false,
        };
        assert_eq!(
            template_table(&answer),
            "TEMPLATE         TITLE                OS         SIZES                                   POOLS  REAPED\n\
             debian-12-xfce*  Debian 12 with XFCE  Debian 12  small (1c/2G/20G), medium* (2c/4G/20G)  -      -\n\
             dev+             -                    -          large* (4c/8G/20G)                      lab    idle 30m, after 12h\n\
             * the default; sizes are cores/memory GiB/disk GB\n\
             + keeps its disk: your next desktop of it restores it (`daas snapshot list`)\n"
        );
    }

    #[test]
    fn audit_table_layout() {
        let create = AuditEntry {
            time: ts(1_700_000_000),
            actor: "alice".into(),
            subject: "CN=alice".into(),
            fingerprint: "ab12".into(),
            peer: "10.1.2.3:51234".into(),
            action: "create".into(),
            session_id: "3f0c".into(),
            owner: "alice".into(),
            result: "OK".into(),
            detail: "template debian-12".into(),
            org: String::new(),
        };
        let refused = AuditEntry {
            time: ts(1_700_000_061),
            actor: "bob".into(),
            peer: "10.1.2.4:40000".into(),
            action: "daas.v1.DesktopService/GetSession".into(),
            result: "PERMISSION_DENIED".into(),
            detail: "you may get only\n  your own sessions".into(),
            ..AuditEntry::default()
        };
        let reap = AuditEntry {
            time: None,
            actor: "reaper".into(),
            action: "reap".into(),
            session_id: "3f0c".into(),
            owner: "alice".into(),
            result: "OK".into(),
            ..AuditEntry::default()
        };
        assert_eq!(
            audit_table(&[refused, create, reap]),
            "TIME                  ACTOR   PEER            ACTION                     SESSION  \
             OWNER  RESULT             DETAIL\n\
             2023-11-14T22:14:21Z  bob     10.1.2.4:40000  DesktopService/GetSession  -        \
             -      PERMISSION_DENIED  you may get only your own sessions\n\
             2023-11-14T22:13:20Z  alice   10.1.2.3:51234  create                     3f0c     \
             alice  OK                 template debian-12\n\
             -                     reaper  -               reap                       3f0c     \
             alice  OK                 -\n"
        );
    }

    #[test]
    fn an_audit_org_column_only_when_an_entry_has_an_organisation() {
        let create = AuditEntry {
            time: ts(1_700_000_000),
            actor: "dave".into(),
            action: "create".into(),
            session_id: "8b1e".into(),
            owner: "dave".into(),
            result: "OK".into(),
            org: "physics".into(),
            ..AuditEntry::default()
        };
        let reap = AuditEntry {
            actor: "reaper".into(),
            action: "reap".into(),
            result: "OK".into(),
            ..AuditEntry::default()
        };
        assert_eq!(
            audit_table(&[create, reap.clone()]),
            "TIME                  ACTOR   PEER  ACTION  SESSION  OWNER  ORG      RESULT  DETAIL\n\
             2023-11-14T22:13:20Z  dave    -     create  8b1e     dave   physics  OK      -\n\
             -                     reaper  -     reap    -        -      -        OK      -\n"
        );
        assert!(!audit_table(&[reap]).contains("ORG"));
    }

    #[test]
    fn table_layout() {
        let ready = ready_session();
        let queued = Session {
            id: "77aa".into(),
            username: "bob".into(),
            state: SessionState::Queued as i32,
            created_at: ready.created_at,
            ..Session::default()
        };
        let table = session_table(&[queued, ready], at(1_700_000_000 + 125));
        assert_eq!(
            table,
            "ID    USER   STATE   VM              RDP            AGE\n\
             77aa  bob    QUEUED  -               -              2m\n\
             3f0c  alice  READY   desktop-ab12cd  10.0.0.5:3389  2m\n"
        );
    }

    #[test]
    fn an_org_column_only_when_a_session_has_an_organisation() {
        let physics = Session {
            id: "8b1e".into(),
            username: "dave".into(),
            org: "physics".into(),
            ..ready_session()
        };
        let table = session_table(&[physics, ready_session()], at(1_700_000_000 + 125));
        assert_eq!(
            table,
            "ID    USER   ORG      STATE  VM              RDP            AGE\n\
             8b1e  dave   physics  READY  desktop-ab12cd  10.0.0.5:3389  2m\n\
             3f0c  alice  -        READY  desktop-ab12cd  10.0.0.5:3389  2m\n"
        );
        assert!(!session_table(&[ready_session()], at(0)).contains("ORG"));
    }

    #[test]
    fn details_name_the_organisation() {
        let physics = Session {
            org: "physics".into(),
            ..ready_session()
        };
        let text = session_details(&physics, at(1_700_000_100));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1..4],
            [
                "user:         alice",
                "organisation: physics",
                "session user: -"
            ]
        );
        assert!(!session_details(&ready_session(), at(0)).contains("organisation"));
    }

    fn amounts(desktops: u32, cores: u32, memory_mb: u64) -> Option<Amounts> {
        Some(Amounts {
            desktops,
            cores,
            memory_mb,
            ..Default::default()
        })
    }

    #[test]
    fn a_members_quota_with_the_organisations() {
        let q = Quota {
            org: "physics".into(),
            org_title: "Physics".into(),
            org_max: amounts(2, 4, 8192),
            org_used: amounts(1, 2, 4096),
            username: "dave".into(),
            user_max: amounts(1, 0, 0),
            user_used: amounts(1, 2, 4096),
            administers: Vec::new(),
        };
        assert_eq!(
            quota(&q),
            "organisation: physics (Physics)\n\
             user:         dave\n\
             \n\
             \x20         ORG-USED  ORG-MAX  USER-USED  USER-MAX\n\
             desktops  1         2        1          1\n\
             vCPUs     2         4        2          no limit\n\
             memory    4 GiB     8 GiB    4 GiB      no limit\n"
        );
    }

    #[test]
    fn an_organisations_quota_alone_and_what_the_caller_administers() {
        let q = Quota {
            org: "physics".into(),
            org_title: String::new(),
            org_max: amounts(0, 16, 0),
            org_used: amounts(3, 6, 1536),
            administers: vec!["physics".into(), "chemistry".into()],
            ..Quota::default()
        };
        assert_eq!(
            quota(&q),
            "organisation: physics\n\
             \n\
             \x20         ORG-USED  ORG-MAX\n\
             desktops  3         no limit\n\
             vCPUs     6         16\n\
             memory    1.5 GiB   no limit\n\
             \n\
             you administer: physics, chemistry\n"
        );
    }

    #[test]
    fn in_no_organisation_the_per_user_limit_only() {
        let q = Quota {
            username: "alice".into(),
            user_max: amounts(3, 0, 0),
            user_used: None,
            ..Quota::default()
        };
        assert_eq!(
            quota(&q),
            "organisation: none (the server's per-user limit applies)\n\
             user:         alice\n\
             \n\
             \x20         USER-USED  USER-MAX\n\
             desktops  0          3\n\
             vCPUs     0          no limit\n\
             memory    0 GiB      no limit\n"
        );
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).expect("a zone of the time zone database")
    }

    #[test]
    fn a_schedule_in_its_time_zone_and_the_callers() {
        assert_eq!(
            schedule_details(&weekdays_in_paris(), &zone("America/New_York")),
            "id:           0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10\n\
             user:         alice\n\
             when:         08:00 mon-fri (Europe/Paris)\n\
             template:     debian-12 (medium)\n\
             next ready:   Mon 2026-12-07 08:00 CET (Europe/Paris)\n\
             local time:   Mon 2026-12-07 02:00 EST (America/New_York)\n"
        );
    }

    #[test]
    fn a_schedule_that_ran_for_an_organisation_with_the_defaults() {
        let ran = Schedule {
            org: "physics".into(),
            template: String::new(),
            size: String::new(),
            last_run_at: ts(1_796_624_400),
            last_session_id: "3f0c".into(),
            ..weekdays_in_paris()
        };
        assert_eq!(
            schedule_details(&ran, &TimeZone::UTC),
            "id:           0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10\n\
             user:         alice\n\
             organisation: physics\n\
             when:         08:00 mon-fri (Europe/Paris)\n\
             template:     default\n\
             next ready:   Mon 2026-12-07 08:00 CET (Europe/Paris)\n\
             local time:   Mon 2026-12-07 07:00 UTC (UTC)\n\
             last run:     2026-12-07T06:20:00Z: 3f0c\n"
        );
        let refused = Schedule {
            last_error: "physics's quota\n of 2 desktops is reached".into(),
            ..ran
        };
        assert!(schedule_details(&refused, &TimeZone::UTC).ends_with(
            "last run:     2026-12-07T06:20:00Z: refused: physics's quota of 2 desktops \
                 is reached\n"
        ));
    }

    #[test]
    fn a_zone_unknown_here_is_shown_in_utc() {
        let elsewhere = Schedule {
            timezone: "Mars/Olympus_Mons".into(),
            ..weekdays_in_paris()
        };
        let text = schedule_details(&elsewhere, &TimeZone::UTC);
        assert!(
            text.contains(
                "next ready:   2026-12-07T07:00:00Z (Mars/Olympus_Mons is unknown here)\n"
            ),
            "{text}"
        );
        assert!(schedule_table(&[elsewhere], None).contains("  2026-12-07T07:00:00Z  "));
        let never = Schedule {
            next_at: None,
            ..weekdays_in_paris()
        };
        let text = schedule_details(&never, &TimeZone::UTC);
        assert!(text.ends_with("next ready:   -\n"), "{text}");
    }

    #[test]
    fn schedule_table_layout() {
        let weekend = Schedule {
            id: "5d2a9e3b-8c47-4f0e-b1d6-2a7c9e4f1b38".into(),
            at: "10:30".into(),
            days: "sat,sun".into(),
            timezone: "America/New_York".into(),
            template: "dev".into(),
            size: String::new(),
            // Sat 2026-12-05 10:30 in New York.
            next_at: ts(1_796_484_600),
            last_run_at: ts(1_796_400_000),
            last_error: "alice's quota of 1 desktop is reached".into(),
            ..weekdays_in_paris()
        };
        let ran = Schedule {
            last_run_at: ts(1_796_540_400),
            last_session_id: "6f1c7d0e-95b4-4c55-9f3e-1f0a2b3c4d5e".into(),
            ..weekdays_in_paris()
        };
        // alice's own: no USER column.
        assert_eq!(
            schedule_table(&[ran.clone(), weekend.clone()], Some("alice")),
            "ID                                    AT     DAYS     TZ                \
             TEMPLATE            NEXT                  LAST\n\
             0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10  08:00  mon-fri  Europe/Paris      \
             debian-12 (medium)  Mon 2026-12-07 08:00  6f1c7d0e-95b4-4c55-9f3e-1f0a2b3c4d5e\n\
             5d2a9e3b-8c47-4f0e-b1d6-2a7c9e4f1b38  10:30  sat,sun  America/New_York  \
             dev                 Sat 2026-12-05 10:30  refused: alice's quota of 1 desktop \
             is reached\n"
        );
        // Another user's among them, or an administrator's list: USER.
        let bobs = Schedule {
            username: "bob".into(),
            ..weekdays_in_paris()
        };
        let columns = |table: String| -> Vec<String> {
            let header = table.lines().next().unwrap_or_default().to_owned();
            header.split_whitespace().map(str::to_owned).collect()
        };
        let with_user = ["ID", "USER", "AT", "DAYS", "TZ", "TEMPLATE", "NEXT", "LAST"];
        assert_eq!(
            columns(schedule_table(&[ran.clone(), bobs.clone()], Some("alice"))),
            with_user
        );
        assert_eq!(
            columns(schedule_table(std::slice::from_ref(&ran), None)),
            with_user
        );
        assert_eq!(columns(schedule_table(&[bobs], Some("alice"))), with_user);
        assert_eq!(columns(schedule_table(&[ran], Some("alice"))).len(), 7);
        assert_eq!(
            schedule_table(&[], Some("alice")),
            "ID  AT  DAYS  TZ  TEMPLATE  NEXT  LAST\n"
        );
    }

    #[test]
    fn a_restored_desktop_names_its_kept_disk() {
        let restored = Session {
            restored_from: "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11".into(),
            ..ready_session()
        };
        assert_eq!(
            ready(&restored),
            "Desktop ready: rdp://10.0.0.5:3389  (session 3f0c, vm desktop-ab12cd)\n\
             restored from: 3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11 (the disk kept when that \
             desktop was destroyed)\n\
             Details: daas show 3f0c"
        );
        // Every value one column further, to clear `restored from:`.
        let text = session_details(&restored, at(1_700_000_100));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "id:            3f0c",
                "user:          alice",
                "session user:  -",
                "template:      debian-12",
                "restored from: 3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11",
            ]
        );
        assert!(
            lines
                .iter()
                .all(|line| line.chars().nth(15).is_some_and(|c| c != ' ')),
            "{text}"
        );
        // A fresh clone: neither line, and values 14 columns in.
        let fresh = session_details(&ready_session(), at(1_700_000_100));
        assert!(!fresh.contains("restored from"), "{fresh}");
        assert!(fresh.starts_with("id:           3f0c\n"), "{fresh}");
        assert!(!ready(&ready_session()).contains("restored from"));
    }

    #[test]
    fn snapshot_table_layout() {
        let older = Snapshot {
            id: "9e01b7a2-4c3d-4e5f-8a6b-7c8d9e0f1a2b".into(),
            template: "dev".into(),
            size: String::new(),
            vm_name: "desktop-9f8e7d".into(),
            created_at: ts(1_796_292_000),
            size_gb: 0,
            ..alices_notes()
        };
        // alice's own, none being restored: no USER, no RESTORING.
        assert_eq!(
            snapshot_table(&[alices_notes(), older.clone()], Some("alice")),
            "ID                                    TEMPLATE          KEPT                  \
             SIZE   VM\n\
             3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11  notes (standard)  2026-12-04T10:00:00Z  \
             20 GB  desktop-ab12cd\n\
             9e01b7a2-4c3d-4e5f-8a6b-7c8d9e0f1a2b  dev               2026-12-03T10:00:00Z  \
             -      desktop-9f8e7d\n"
        );
        // One being restored: RESTORING; another user's, or an
        // administrator's list: USER.
        let restoring = Snapshot {
            restoring_session_id: "6f1c7d0e-95b4-4c55-9f3e-1f0a2b3c4d5e".into(),
            ..alices_notes()
        };
        assert_eq!(
            snapshot_table(&[restoring.clone(), older.clone()], Some("alice")),
            "ID                                    TEMPLATE          KEPT                  \
             SIZE   VM              RESTORING\n\
             3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11  notes (standard)  2026-12-04T10:00:00Z  \
             20 GB  desktop-ab12cd  6f1c7d0e-95b4-4c55-9f3e-1f0a2b3c4d5e\n\
             9e01b7a2-4c3d-4e5f-8a6b-7c8d9e0f1a2b  dev               2026-12-03T10:00:00Z  \
             -      desktop-9f8e7d  -\n"
        );
        let bobs = Snapshot {
            username: "bob".into(),
            ..older
        };
        let columns = |table: String| -> Vec<String> {
            let header = table.lines().next().unwrap_or_default().to_owned();
            header.split_whitespace().map(str::to_owned).collect()
        };
        let with_user = ["ID", "USER", "TEMPLATE", "KEPT", "SIZE", "VM"];
        assert_eq!(
            columns(snapshot_table(
                &[alices_notes(), bobs.clone()],
                Some("alice")
            )),
            with_user
        );
        assert_eq!(columns(snapshot_table(&[alices_notes()], None)), with_user);
        assert_eq!(columns(snapshot_table(&[bobs], Some("alice"))), with_user);
        assert_eq!(
            columns(snapshot_table(&[restoring], None)),
            ["ID", "USER", "TEMPLATE", "KEPT", "SIZE", "VM", "RESTORING"]
        );
        assert_eq!(
            snapshot_table(&[], Some("alice")),
            "ID  TEMPLATE  KEPT  SIZE  VM\n"
        );
    }

    #[test]
    fn a_deleted_snapshot_is_named() {
        assert_eq!(
            snapshot_deleted(&alices_notes()),
            "deleted kept disk 3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11: alice's notes disk (vm \
             desktop-ab12cd); alice's next notes desktop starts blank"
        );
    }

    #[test]
    fn a_removed_schedule_is_named() {
        assert_eq!(
            schedule_removed(&weekdays_in_paris()),
            "removed schedule 0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10: alice's desktop at 08:00 \
             mon-fri (Europe/Paris); desktops it already made stay"
        );
    }

    #[test]
    fn an_empty_table_has_its_header() {
        assert_eq!(session_table(&[], at(0)), "ID  USER  STATE  VM  RDP  AGE\n");
    }

    #[test]
    fn details_one_per_line() {
        let text = session_details(&ready_session(), at(1_700_000_000 + 100));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id:           3f0c");
        assert!(lines.contains(&"session user: -"));
        assert!(lines.contains(&"rdp:          rdp://10.0.0.5:3389"));
        assert!(lines.contains(&"ssh:          10.0.0.5:22"));
        assert!(lines.contains(&"created:      2023-11-14T22:13:20Z  (1m ago)"));
        assert!(!text.contains("failure"));
    }

    #[test]
    fn details_of_a_failed_session() {
        let s = Session {
            id: "x".into(),
            state: SessionState::Failed as i32,
            failure: Some(Failure {
                stage: SessionState::Booting as i32,
                reason: "SSH timed out".into(),
            }),
            ..Session::default()
        };
        let text = session_details(&s, at(0));
        assert!(text.contains("state:        FAILED\n"));
        assert!(text.contains("failure:      in BOOTING: SSH timed out\n"));
        assert_eq!(failure(&s), ("BOOTING", "SSH timed out".to_owned()));
    }

    #[test]
    fn why_alive_reads_as_one_line() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let at = |secs: i64| {
            Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            })
        };
        let activity = Activity {
            last_report_at: at(9_990),
            last_input_at: at(9_820),
            rdp_clients: 1,
            users: vec!["alice".into()],
            agent_version: "0.1.0".into(),
            reap_at: at(11_620),
            reap_reason: "idle_timeout 30m: no input since 02:43 UTC".into(),
        };
        assert_eq!(
            why_alive(&activity, now),
            format!(
                "last input {} ago, 1 RDP client, last report {} ago; reaped in {} \
                 (idle_timeout 30m: no input since 02:43 UTC)",
                age(Duration::from_secs(180)),
                age(Duration::from_secs(10)),
                age(Duration::from_secs(1_620))
            )
        );
        let silent = Activity {
            reap_at: at(10_300),
            reap_reason: "agent_lost_timeout 10m: the agent never reported".into(),
            ..Activity::default()
        };
        assert!(
            why_alive(&silent, now)
                .starts_with("no report from the desktop's agent yet; reaped in")
        );
    }
}
