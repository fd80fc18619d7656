//! Who owns a display: user name and home for a uid, from `/etc/passwd`,
//! else `getent passwd UID` (which asks NSS, so Active Directory users
//! served by sssd or winbind are found too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::{SMALL_FILE, read_text_capped};

/// The local account database.
pub const PASSWD: &str = "/etc/passwd";

/// How long `getent` may take (a directory server may be slow).
const GETENT_TIMEOUT: Duration = Duration::from_secs(3);

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

/// The account of `uid`: `/etc/passwd`, then `getent`.
pub fn account_for_uid(uid: u32) -> Option<Account> {
    read_text_capped(Path::new(PASSWD), 16 * SMALL_FILE)
        .ok()
        .and_then(|text| find_uid(&text, uid))
        .or_else(|| getent(uid))
}

/// The entry for `uid` in passwd-format text; malformed lines are skipped.
pub fn find_uid(text: &str, uid: u32) -> Option<Account> {
    text.lines().filter_map(parse_line).find(|a| a.uid == uid)
}

/// One `name:x:uid:gid:gecos:home:shell` line.
pub fn parse_line(line: &str) -> Option<Account> {
    let fields: Vec<&str> = line.split(':').collect();
    let [name, _, uid, _, _, home, ..] = fields.as_slice() else {
        return None;
    };
    if name.is_empty() || name.starts_with('#') || !home.starts_with('/') {
        return None;
    }
    Some(Account {
        name: (*name).to_owned(),
        uid: uid.parse().ok()?,
        home: PathBuf::from(home),
    })
}

/// `getent passwd UID`, with a timeout.
fn getent(uid: u32) -> Option<Account> {
    let mut child = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + GETENT_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    find_uid(&text, uid)
}

/// The value of `key` in the NUL-separated `KEY=value` bytes of a
/// `/proc/PID/environ`.
pub fn environ_var(environ: &[u8], key: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        String::from_utf8(value.to_vec()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_parsed() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    broken line\n\
                    :x:5:5::/x:/bin/sh\n\
                    bob:x:notanumber:1::/home/bob:/bin/sh\n\
                    alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n";
        assert_eq!(
            find_uid(text, 1000),
            Some(Account {
                name: "alice".into(),
                uid: 1000,
                home: "/home/alice".into()
            })
        );
        assert_eq!(find_uid(text, 0).map(|a| a.name), Some("root".into()));
        assert_eq!(find_uid(text, 5), None);
        assert_eq!(find_uid(text, 7), None);
    }

    #[test]
    fn environ_variables_are_found() {
        let environ = b"PATH=/usr/bin\0HOME=/home/alice\0USER=alice\0USERX=no\0";
        assert_eq!(environ_var(environ, "USER"), Some("alice".into()));
        assert_eq!(environ_var(environ, "HOME"), Some("/home/alice".into()));
        assert_eq!(environ_var(environ, "LOGNAME"), None);
        assert_eq!(environ_var(b"\xff\xfe", "USER"), None);
    }
}
