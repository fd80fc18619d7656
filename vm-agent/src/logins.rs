//! Users logged in: logind's sessions (`/run/systemd/sessions/*`) and the
//! `USER_PROCESS` records of utmp, without duplicates.
//!
//! utmp is read as glibc on x86_64 writes it: 384-byte records, `ut_type`
//! (i16) at 0, `ut_pid` (i32) at 4, `ut_user` (32 bytes, NUL-padded) at 44.
//! A truncated last record, garbage bytes and names that are not printable
//! UTF-8 are skipped; a record whose process is gone (a session that ended
//! without cleaning utmp) is skipped too.

use std::path::Path;

use crate::files::{SMALL_FILE, read_capped, read_text_capped};

/// Size of one `struct utmp` (glibc, x86_64).
pub const UTMP_RECORD: usize = 384;
/// `ut_type` of a login.
pub const USER_PROCESS: i16 = 7;
/// Offsets and sizes in a record.
pub const UT_PID: usize = 4;
pub const UT_LINE: usize = 8;
pub const UT_USER: usize = 44;
pub const UT_USER_LEN: usize = 32;
pub const UT_HOST: usize = 76;

/// Where logind keeps one file per session.
pub const LOGIND_SESSIONS: &str = "/run/systemd/sessions";

/// The users logged in, sorted, each once.
pub fn logged_in_users(utmp: &Path, proc_root: &Path) -> Vec<String> {
    let mut users = logind_users(Path::new(LOGIND_SESSIONS));
    if let Ok(bytes) = read_capped(utmp, SMALL_FILE) {
        let alive = |pid: i32| pid <= 0 || proc_root.join(pid.to_string()).exists();
        users.extend(utmp_users(&bytes, alive));
    }
    users.sort();
    users.dedup();
    users
}

/// The users of the live `USER_PROCESS` records in the bytes of a utmp
/// file; `alive(pid)` says whether a record's process still runs.
pub fn utmp_users(bytes: &[u8], alive: impl Fn(i32) -> bool) -> Vec<String> {
    let mut users: Vec<String> = bytes
        .chunks_exact(UTMP_RECORD)
        .filter_map(|record| {
            let kind = i16::from_ne_bytes([record[0], record[1]]);
            let pid = i32::from_ne_bytes(record[UT_PID..UT_PID + 4].try_into().ok()?);
            if kind != USER_PROCESS || !alive(pid) {
                return None;
            }
            user_name(&record[UT_USER..UT_USER + UT_USER_LEN])
        })
        .collect();
    users.sort();
    users.dedup();
    users
}

/// A NUL-padded name, if it is a plausible user name.
fn user_name(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let name = std::str::from_utf8(&field[..end]).ok()?;
    plausible_name(name).then(|| name.to_owned())
}

/// Non-empty, no control characters or spaces (AD names may hold `@`,
/// `\`, `.` or `-`).
fn plausible_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The users of logind's open sessions in `dir` (one file per session,
/// `KEY=value` lines; `USER=`, `STATE=` and `CLASS=` are used).
pub fn logind_users(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut users: Vec<String> = entries
        .flatten()
        .filter_map(|entry| read_text_capped(&entry.path(), SMALL_FILE).ok())
        .filter_map(|text| logind_session_user(&text))
        .collect();
    users.sort();
    users.dedup();
    users
}

/// The user of one logind session file, unless the session is closing or
/// is not a user's (e.g. a greeter).
pub fn logind_session_user(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    };
    if value("STATE") == Some("closing") {
        return None;
    }
    if value("CLASS").is_some_and(|class| !class.starts_with("user")) {
        return None;
    }
    value("USER")
        .filter(|name| plausible_name(name))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logind_sessions_are_read() {
        let active = "# This is private data. Do not parse.\nUID=1000\nUSER=alice\nACTIVE=1\nSTATE=active\nREMOTE=0\nTYPE=x11\nCLASS=user\n";
        assert_eq!(logind_session_user(active), Some("alice".into()));
        assert_eq!(
            logind_session_user(&active.replace("STATE=active", "STATE=closing")),
            None
        );
        assert_eq!(
            logind_session_user(&active.replace("CLASS=user", "CLASS=greeter")),
            None
        );
        assert_eq!(logind_session_user("UID=1\n"), None);
        assert_eq!(logind_session_user("USER=\n"), None);
        assert_eq!(logind_session_user("USERNAME=x\n"), None);
    }
}
