//! After a restart, deals with the tools a previous server process left
//! running: who a process is (from /proc, since pids are reused), which
//! tools still work in a session's folder, and whether to let one finish
//! (Terraform, which must not be cut off while it writes its state) or to
//! stop it.

use std::{path::Path, time::Duration};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

use super::{GRACE, INTERRUPT_GRACE, StopStyle, style_name};
use crate::store::ChildRecord;

/// Who a process is beyond its pid, which is reused: the boot and the
/// process's start time (in clock ticks since boot), from /proc.
pub fn process_identity(pid: i32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 is the state, field 22 the start time.
    if fields.first() == Some(&"Z") {
        return None;
    }
    let start = fields.get(19)?;
    Some(format!("{} {start}", boot.trim()))
}

/// The identity [`tools_in`] gives a group whose leader has exited.
const NO_LEADER: &str = "gone 0";

/// The process groups of the tools working in `dir` (their current folder
/// is in it), each described as [`run_status`](super::run_status) records
/// its tool: a group led by `terraform` is one to let finish, any other one
/// to stop. This finds a tool the server started but died before recording.
pub fn tools_in(dir: &Path) -> Vec<ChildRecord> {
    let mut groups = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
            && let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
        {
            groups.insert(pgid.as_raw());
        }
    }
    groups
        .into_iter()
        .filter(|&pgid| pgid > 1)
        .map(|pgid| {
            let leader = std::fs::read_to_string(format!("/proc/{pgid}/comm")).unwrap_or_default();
            let style = if leader.trim() == "terraform" {
                StopStyle::InterruptFirst
            } else {
                StopStyle::Group
            };
            // A group whose leader is gone is stopped through any member.
            let identity = process_identity(pgid).unwrap_or_else(|| NO_LEADER.into());
            ChildRecord {
                pgid,
                identity: format!("{} {identity}", style_name(style)),
            }
        })
        .collect()
}

/// What a restarted server does with a tool a previous process left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Nothing of it runs any more.
    Gone,
    /// It ran and was left to finish.
    Finished,
    /// It was stopped.
    Stopped,
}

/// Deals with a tool a previous server process left running: a Terraform
/// run is left to finish (at most `wait`, then interrupted); any other tool
/// is stopped. A recorded process that is not the same process any more
/// (its pid reused) is left alone.
pub async fn adopt(child: &ChildRecord, wait: Duration) -> Adopted {
    let Some((style, identity)) = child.identity.split_once(' ') else {
        return Adopted::Gone;
    };
    let group = Pid::from_raw(child.pgid);
    if identity == NO_LEADER {
        // A leaderless group found in a session's folder: what is left of it.
        if child.pgid > 1 && killpg(group, Signal::SIGKILL).is_ok() {
            return Adopted::Stopped;
        }
        return Adopted::Gone;
    }
    let same = || process_identity(child.pgid).as_deref() == Some(identity);
    if child.pgid <= 1 || !same() {
        return Adopted::Gone;
    }
    if style == style_name(StopStyle::InterruptFirst) {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if !same() {
                return Adopted::Finished;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = kill(group, Signal::SIGINT);
        if wait_until_gone(&same, INTERRUPT_GRACE).await {
            let _ = killpg(group, Signal::SIGKILL);
            return Adopted::Stopped;
        }
    }
    let _ = killpg(group, Signal::SIGTERM);
    if !wait_until_gone(&same, GRACE).await {
        let _ = killpg(group, Signal::SIGKILL);
    }
    // Whatever else is left in the group.
    let _ = killpg(group, Signal::SIGKILL);
    Adopted::Stopped
}

async fn wait_until_gone(same: &impl Fn() -> bool, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if !same() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !same()
}
