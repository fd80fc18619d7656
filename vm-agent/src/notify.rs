//! Telling the person at the desktop that it is ending: `notify-send` on
//! each X display, as the display's user (its session bus is theirs).
//! Best effort: every failure is logged, none stops the agent.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::config::AgentConfig;
use crate::files::read_text_capped;
use crate::x11idle::{self, Display};

/// The notification's title.
pub const TITLE: &str = "Desktop ending";

/// How long one `notify-send` may take.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Shows `message` on every X display of `config`'s socket folder.
pub async fn notify_users(config: &AgentConfig, message: &str) {
    let lookup = config.clone();
    let displays = tokio::task::spawn_blocking(move || x11idle::displays(&lookup))
        .await
        .unwrap_or_default();
    if displays.is_empty() {
        tracing::info!("no X display to notify");
    }
    let self_uid = effective_uid(&config.proc_root);
    for display in &displays {
        let Some(user) = display.user.as_deref() else {
            let (number, uid) = (display.number, display.uid);
            tracing::warn!("display :{number}: owner uid {uid} has no account name; not notified");
            continue;
        };
        let argv = notify_command(display, user, self_uid, message);
        run_notify(display.number, user, &argv).await;
    }
}

/// The argument vector (program first) that shows `message` on `display`
/// as `user`: `notify-send` directly when the agent runs as the display's
/// owner, else through `runuser`. No shell is involved: the message is one
/// argument whatever it holds.
pub fn notify_command(
    display: &Display,
    user: &str,
    self_uid: Option<u32>,
    message: &str,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::new();
    if self_uid != Some(display.uid) {
        argv.extend(["runuser", "-u", user, "--"].map(OsString::from));
    }
    argv.push("env".into());
    argv.push(format!("DISPLAY=:{}", display.number).into());
    argv.push(
        format!(
            "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{}/bus",
            display.uid
        )
        .into(),
    );
    argv.extend(["notify-send", "-u", "critical", "-a", "DaaS", TITLE].map(OsString::from));
    // `--` keeps a message starting with `-` from being read as an option.
    argv.push("--".into());
    argv.push(message.into());
    argv
}

/// Runs one notification command, logging how it went.
async fn run_notify(number: u32, user: &str, argv: &[OsString]) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(
                "display :{number}: cannot run {}: {err}",
                program.to_string_lossy()
            );
            return;
        }
    };
    match tokio::time::timeout(NOTIFY_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => {
            tracing::info!("display :{number}: notified {user}");
        }
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tracing::warn!(
                "display :{number}: notifying {user} failed ({}): {}",
                output.status,
                stderr.trim()
            );
        }
        Ok(Err(err)) => tracing::warn!("display :{number}: notifying {user} failed: {err}"),
        Err(_) => tracing::warn!(
            "display :{number}: notifying {user} took more than {}s; stopped",
            NOTIFY_TIMEOUT.as_secs()
        ),
    }
}

/// The agent's effective uid, from `status` under procfs.
pub fn effective_uid(proc_root: &Path) -> Option<u32> {
    let status = read_text_capped(&proc_root.join("self/status"), 64 * 1024).ok()?;
    parse_effective_uid(&status)
}

/// The effective uid (second field) of the `Uid:` line of a
/// `/proc/PID/status`.
pub fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn display() -> Display {
        Display {
            number: 10,
            socket: PathBuf::from("/tmp/.X11-unix/X10"),
            uid: 1000,
            user: Some("alice".into()),
            xauthority: vec![],
        }
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn another_users_display_is_notified_through_runuser() {
        let message = "Ends at 14:05; $(rm -rf ~) `x` \"quoted\"";
        let argv = notify_command(&display(), "alice", Some(0), message);
        assert_eq!(
            strings(&argv),
            [
                "runuser",
                "-u",
                "alice",
                "--",
                "env",
                "DISPLAY=:10",
                "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus",
                "notify-send",
                "-u",
                "critical",
                "-a",
                "DaaS",
                "Desktop ending",
                "--",
                message,
            ]
        );
    }

    #[test]
    fn the_agents_own_display_is_notified_directly() {
        let argv = notify_command(&display(), "alice", Some(1000), "-bye");
        let argv = strings(&argv);
        assert_eq!(argv.first().map(String::as_str), Some("env"));
        assert_eq!(argv.last().map(String::as_str), Some("-bye"));
    }

    #[test]
    fn the_effective_uid_is_read() {
        let status = "Name:\tdaas-agent\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Uid:\tx\n"), None);
        assert_eq!(parse_effective_uid(""), None);
    }
}
