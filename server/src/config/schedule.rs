//! A pool's size by time of day: `[[pools.NAME.schedule]]` windows such as
//! 30 desktops from 07:45 to 09:00 on weekdays, in the server's time zone
//! (or the pool's `timezone`). Outside every window the pool has its
//! `size`; where windows overlap, the largest size wins.

use serde::{Deserialize, Serialize};

/// One window as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// "mon-fri", "sat,sun", "mon,wed-fri" or "daily".
    #[serde(default = "daily")]
    pub days: String,
    /// Start, "HH:MM" (inclusive).
    pub from: String,
    /// End, "HH:MM" (exclusive), after `from` on the same day.
    pub to: String,
    /// Ready desktops wanted during the window.
    pub size: u32,
}

fn daily() -> String {
    "daily".into()
}

/// A checked window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    days: [bool; 7],
    from_minute: u16,
    to_minute: u16,
    size: u32,
}

use crate::domain::recurrence::{days, minute};

impl Window {
    pub fn parse(spec: &WindowSpec) -> Result<Window, String> {
        let window = Window {
            days: days(&spec.days)?,
            from_minute: minute(&spec.from)?,
            to_minute: minute(&spec.to)?,
            size: spec.size,
        };
        if window.from_minute >= window.to_minute {
            return Err(format!(
                "from {} must come before to {} on the same day (split a window across midnight in two)",
                spec.from, spec.to
            ));
        }
        Ok(window)
    }

    fn covers(&self, weekday: usize, minute: u16) -> bool {
        self.days.get(weekday).copied().unwrap_or(false)
            && (self.from_minute..self.to_minute).contains(&minute)
    }
}

/// The size wanted on `weekday` (0: Monday) at `minute` after midnight.
pub fn size_at(base: u32, windows: &[Window], weekday: usize, minute: u16) -> u32 {
    windows
        .iter()
        .filter(|w| w.covers(weekday, minute))
        .map(|w| w.size)
        .max()
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &str, from: &str, to: &str, size: u32) -> Result<Window, String> {
        Window::parse(&WindowSpec {
            days: days.into(),
            from: from.into(),
            to: to.into(),
            size,
        })
    }

    #[test]
    fn the_morning_rush_on_weekdays() {
        let rush = [window("mon-fri", "07:45", "09:00", 30).expect("valid")];
        let at = |day, h: u16, m: u16| size_at(2, &rush, day, h * 60 + m);
        assert_eq!(at(0, 7, 44), 2, "before the window");
        assert_eq!(at(0, 7, 45), 30, "from is inclusive");
        assert_eq!(at(4, 8, 59), 30, "friday");
        assert_eq!(at(4, 9, 0), 2, "to is exclusive");
        assert_eq!(at(5, 8, 0), 2, "saturday");
    }

    #[test]
    fn overlapping_windows_take_the_largest() {
        let windows = [
            window("daily", "08:00", "18:00", 5).expect("valid"),
            window("mon,wed", "10:00", "11:00", 12).expect("valid"),
        ];
        assert_eq!(size_at(0, &windows, 2, 10 * 60 + 30), 12);
        assert_eq!(size_at(0, &windows, 1, 10 * 60 + 30), 5);
        assert_eq!(size_at(0, &windows, 1, 20 * 60), 0);
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        for (days, from, to, why) in [
            ("fri-mon", "08:00", "09:00", "backwards"),
            ("mon-frx", "08:00", "09:00", "not a day"),
            ("daily", "8h", "09:00", "not a time"),
            ("daily", "09:00", "08:00", "before"),
            ("daily", "25:00", "26:00", "not a time"),
        ] {
            let err = window(days, from, to, 1).expect_err(days);
            assert!(err.contains(why), "{err}");
        }
        assert!(window("daily", "00:00", "24:00", 1).is_ok());
    }
}
