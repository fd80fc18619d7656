//! One activity sample: what a report says.

use std::time::{Duration, SystemTime};

use crate::config::AgentConfig;
use crate::x11idle::{self, Display};
use crate::{boot, logins, rdp};

/// The desktop's activity at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Seconds since the last keyboard or mouse input on any X display;
    /// with no display answering, seconds since boot.
    pub idle_seconds: u64,
    /// Established TCP connections to xrdp's port.
    pub rdp_clients: u32,
    /// Users logged in, sorted, each once.
    pub users: Vec<String>,
    /// X displays whose idle time could be read.
    pub displays: u32,
    /// When the VM booted.
    pub boot_time: SystemTime,
}

/// Samples the desktop. Never fails: a missing or unreadable part
/// degrades (no display answering: idle since boot, `displays = 0`; no
/// procfs: no RDP client, boot time now).
pub fn sample(config: &AgentConfig) -> Activity {
    let mut activity = sample_without_x(config);
    let idles: Vec<Duration> = x11idle::displays(config)
        .iter()
        .filter_map(|display| display_idle(display, config))
        .collect();
    activity.displays = u32::try_from(idles.len()).unwrap_or(u32::MAX);
    if let Some(idle) = idles.iter().min() {
        activity.idle_seconds = idle.as_secs();
    }
    activity
}

/// Like [`sample`], without asking any X server: idle is the time since
/// boot, `displays = 0`. What the agent reports when the X servers did not
/// answer in time.
pub fn sample_without_x(config: &AgentConfig) -> Activity {
    let boot_time = boot::boot_time(&config.proc_root).unwrap_or_else(SystemTime::now);
    Activity {
        idle_seconds: SystemTime::now()
            .duration_since(boot_time)
            .unwrap_or_default()
            .as_secs(),
        rdp_clients: rdp::rdp_clients(&config.proc_root, config.xrdp_port),
        users: logins::logged_in_users(&config.utmp, &config.proc_root),
        displays: 0,
        boot_time,
    }
}

/// The idle time of one display, or `None` (logged at debug level: an
/// X server that is starting or stopping is normal).
fn display_idle(display: &Display, config: &AgentConfig) -> Option<Duration> {
    match x11idle::idle_time(display, &config.proc_root) {
        Ok(idle) => Some(idle),
        Err(err) => {
            let number = display.number;
            tracing::debug!("display :{number}: no idle time: {err}");
            None
        }
    }
}

impl Activity {
    /// The sample as one line of JSON (for `daas-agent --once`).
    pub fn to_json(&self) -> String {
        let boot = self
            .boot_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let users: Vec<String> = self.users.iter().map(|u| json_string(u)).collect();
        format!(
            "{{\"idle_seconds\":{},\"rdp_clients\":{},\"users\":[{}],\"displays\":{},\"boot_time\":{}}}",
            self.idle_seconds,
            self.rdp_clients,
            users.join(","),
            self.displays,
            boot
        )
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped() {
        let activity = Activity {
            idle_seconds: 5,
            rdp_clients: 1,
            users: vec!["a\"b\\c".into(), "d\u{1}".into()],
            displays: 1,
            boot_time: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        };
        assert_eq!(
            activity.to_json(),
            r#"{"idle_seconds":5,"rdp_clients":1,"users":["a\"b\\c","d\u0001"],"displays":1,"boot_time":100}"#
        );
    }
}
