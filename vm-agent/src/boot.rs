//! When the VM booted: `btime` in `/proc/stat`, else now minus
//! `/proc/uptime`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::files::{SMALL_FILE, read_text_capped};

/// The boot time procfs under `proc_root` states, if it can be read.
pub fn boot_time(proc_root: &Path) -> Option<SystemTime> {
    let from_stat = read_text_capped(&proc_root.join("stat"), SMALL_FILE)
        .ok()
        .and_then(|text| parse_btime(&text));
    from_stat.or_else(|| {
        let text = read_text_capped(&proc_root.join("uptime"), SMALL_FILE).ok()?;
        SystemTime::now().checked_sub(parse_uptime(&text)?)
    })
}

/// The `btime SECONDS` line of `/proc/stat`.
pub fn parse_btime(stat: &str) -> Option<SystemTime> {
    let seconds = stat.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some("btime")).then(|| fields.next()?.parse::<u64>().ok())?
    })?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// The first field of `/proc/uptime` ("12345.67 23456.78").
pub fn parse_uptime(uptime: &str) -> Option<Duration> {
    let seconds: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btime_is_read_from_stat() {
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 9\nbtime 1717171717\nprocesses 3\n";
        assert_eq!(
            parse_btime(stat),
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(1_717_171_717))
        );
        for bad in [
            "",
            "btime\n",
            "btime x\n",
            "btime -5\n",
            "xbtime 5\n",
            "btime 99999999999999999999",
        ] {
            assert_eq!(parse_btime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn uptime_is_parsed() {
        assert_eq!(
            parse_uptime("12.50 3.00\n"),
            Some(Duration::from_millis(12_500))
        );
        for bad in ["", "x", "-1 2", "NaN 1", "inf"] {
            assert_eq!(parse_uptime(bad), None, "{bad:?}");
        }
    }
}
