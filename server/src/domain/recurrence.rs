//! Times of day on some days of the week, in a time zone: the days and
//! times as people write them ("mon-fri", "08:00"), shared by the pools'
//! windows and the users' schedules, and a schedule's occurrences as
//! instants, decided apart from acting on them (`schedules::run`).

use jiff::{Timestamp, ToSpan, civil, tz::TimeZone};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(name: &str) -> Result<usize, String> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| format!("`{name}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

/// The days `spec` names, Monday first: "mon-fri", "sat,sun",
/// "mon,wed-fri", "daily" (or "*").
pub fn days(spec: &str) -> Result<[bool; 7], String> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("daily") || spec == "*" {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                if first > last {
                    return Err(format!(
                        "`{part}` runs backwards (write mon-fri, not fri-mon)"
                    ));
                }
                days[first..=last].iter_mut().for_each(|d| *d = true);
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

/// The minute after midnight of `time`, "HH:MM" (24:00 is the day's end).
pub fn minute(time: &str) -> Result<u16, String> {
    let bad = || format!("`{time}` is not a time of day HH:MM");
    let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A time of day on some days of the week, in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after midnight, before 24:00.
    pub minute: u16,
    pub timezone: TimeZone,
}

/// Why a recurrence is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {why}")]
pub struct Invalid {
    pub field: &'static str,
    pub why: String,
}

impl Recurrence {
    /// `at` ("HH:MM"), `days` and an IANA `timezone` as given.
    pub fn parse(at: &str, days_spec: &str, timezone: &str) -> Result<Recurrence, Invalid> {
        let minute = minute(at)
            .ok()
            .filter(|m| *m < 24 * 60)
            .ok_or_else(|| Invalid {
                field: "at",
                why: format!("`{at}` is not a time of day HH:MM (00:00 to 23:59)"),
            })?;
        let days = days(days_spec).map_err(|why| Invalid { field: "days", why })?;
        if !days.contains(&true) {
            return Err(Invalid {
                field: "days",
                why: "names no day".into(),
            });
        }
        let timezone = TimeZone::get(timezone).map_err(|_| Invalid {
            field: "timezone",
            why: format!("`{timezone}` is not a known IANA time zone (e.g. Europe/Paris)"),
        })?;
        Ok(Recurrence {
            days,
            minute,
            timezone,
        })
    }

    /// The first occurrence at or after `from_ms`, in ms since the epoch. A
    /// time that a change to summer time skips happens at the same offset
    /// as before it (02:30 becomes 03:30); one that repeats, at the first.
    pub fn next_from(&self, from_ms: i64) -> Option<i64> {
        let from = Timestamp::from_millisecond(from_ms).ok()?;
        let start = from.to_zoned(self.timezone.clone()).date();
        let time = civil::time(
            i8::try_from(self.minute / 60).ok()?,
            i8::try_from(self.minute % 60).ok()?,
            0,
            0,
        );
        for offset in 0..8i32 {
            let date = start.checked_add(offset.days()).ok()?;
            let weekday = usize::try_from(date.weekday().to_monday_zero_offset()).ok()?;
            if !self.days[weekday] {
                continue;
            }
            let at = date
                .to_datetime(time)
                .to_zoned(self.timezone.clone())
                .ok()?;
            let ms = at.timestamp().as_millisecond();
            if ms >= from_ms {
                return Some(ms);
            }
        }
        None
    }

    /// The occurrence to act on at `now_ms`, if any: the one due within
    /// `lead_ms` from now, or missed by at most `late_ms`, that is later than
    /// `done_ms` (the last one acted on).
    pub fn due(
        &self,
        now_ms: i64,
        lead_ms: i64,
        late_ms: i64,
        done_ms: Option<i64>,
    ) -> Option<i64> {
        let next = self.next_from(now_ms - late_ms)?;
        (next - lead_ms <= now_ms && done_ms.is_none_or(|done| next > done)).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn weekdays_at_eight_in_paris() {
        let r = Recurrence::parse("08:00", "mon-fri", "Europe/Paris").unwrap();
        // Friday 2026-12-04 09:00 in Paris (08:00 UTC): next is Monday.
        assert_eq!(
            r.next_from(ms("2026-12-04T08:00:00Z")),
            Some(ms("2026-12-07T07:00:00Z"))
        );
        // Monday 06:00 UTC: today at 08:00 Paris (07:00 UTC).
        assert_eq!(
            r.next_from(ms("2026-12-07T06:00:00Z")),
            Some(ms("2026-12-07T07:00:00Z"))
        );
        // In summer Paris is UTC+2.
        assert_eq!(
            r.next_from(ms("2026-07-06T00:00:00Z")),
            Some(ms("2026-07-06T06:00:00Z"))
        );
    }

    #[test]
    fn a_time_skipped_by_summer_time_comes_an_hour_later() {
        // 2026-03-29: Paris goes from 02:00 to 03:00.
        let r = Recurrence::parse("02:30", "sun", "Europe/Paris").unwrap();
        assert_eq!(
            r.next_from(ms("2026-03-28T12:00:00Z")),
            Some(ms("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn due_within_the_lead_once_and_not_too_late() {
        let r = Recurrence::parse("08:00", "daily", "UTC").unwrap();
        let eight = ms("2026-12-07T08:00:00Z");
        let (lead, late) = (10 * MINUTE, 30 * MINUTE);
        assert_eq!(
            r.due(eight - 11 * MINUTE, lead, late, None),
            None,
            "too early"
        );
        assert_eq!(r.due(eight - 10 * MINUTE, lead, late, None), Some(eight));
        assert_eq!(r.due(eight - MINUTE, lead, late, Some(eight)), None, "done");
        assert_eq!(
            r.due(eight + 20 * MINUTE, lead, late, None),
            Some(eight),
            "late"
        );
        assert_eq!(r.due(eight + 31 * MINUTE, lead, late, None), None, "missed");
        // The next day's, once yesterday's is done.
        assert_eq!(
            r.due(eight + 24 * HOUR - 5 * MINUTE, lead, late, Some(eight)),
            Some(eight + 24 * HOUR)
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        for (at, days, tz, field) in [
            ("25:00", "daily", "UTC", "at"),
            ("24:00", "daily", "UTC", "at"),
            ("8h", "daily", "UTC", "at"),
            ("08:00", "fri-mon", "UTC", "days"),
            ("08:00", "", "UTC", "days"),
            ("08:00", "daily", "Mars/Olympus", "timezone"),
        ] {
            assert_eq!(
                Recurrence::parse(at, days, tz).unwrap_err().field,
                field,
                "{at} {days} {tz}"
            );
        }
    }
}
