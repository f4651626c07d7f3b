//! Schedules written as crontab(5) lines, evaluated in local time exactly as cron does.
//!
//! The `cron` crate was used before, but its semantics differ from crontab(5) where it
//! matters (found in review): it ANDs day-of-month and day-of-week when both are
//! restricted — crontab ORs them, so `0 0 1 * 1` fires on the 1st *and* on every
//! Monday — and it rejects steps over ranges (`1-7/2`). This small evaluator follows
//! the man page (cronie's `crontab.5`):
//!
//! * fields: minute 0–59, hour 0–23, day of month 1–31, month 1–12 or `jan`–`dec`, day
//!   of week 0–7 (0 and 7 are Sunday) or `sun`–`sat`;
//! * each field a comma list of `*`, `N`, `N-M`, each optionally `/STEP` (`N/STEP`
//!   means `N-max/STEP`), names allowed for single values and ranges;
//! * `@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`;
//! * day of month and day of week: when both are restricted (neither starts with `*`),
//!   a day matches if either does.
//!
//! Local times that do not exist (skipped by a DST change) never fire; a repeated hour
//! fires once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use serde::{de, Deserialize, Deserializer};

/// A parsed crontab schedule; `text` is kept for display.
#[derive(Clone)]
pub struct CronSchedule {
    pub text: String,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Both day fields restricted: a day matches if either does.
    days_either: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's allowed values as a bit set (bit N = value N).
fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + min);
        }
        match s.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            Ok(v) => Err(format!("{v} is out of range {min}-{max}")),
            Err(_) => Err(format!(
                "{s:?} is not a number{}",
                match names.is_empty() {
                    true => "",
                    false => " or a name",
                }
            )),
        }
    };
    let mut bits = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("{s:?} is not a step (a positive number)"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let v = value(range)?;
            // "N/STEP" means from N to the end, every STEP.
            (v, if item.contains('/') { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fields = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "invalid schedule {text:?}: expected a crontab line with 5 fields (minute hour day-of-month month day-of-week), like \"*/15 * * * *\", got {} fields",
                parts.len()
            ));
        }
        let field = |i: usize, what: &str, min, max, names: &[&str]| {
            parse_field(parts[i], min, max, names)
                .map_err(|e| format!("invalid schedule {text:?}: {what} {e}"))
        };
        let dow = field(4, "day-of-week", 0, 7, &DAYS)?;
        Ok(CronSchedule {
            text: text.trim().to_string(),
            minutes: field(0, "minute", 0, 59, &[])?,
            hours: field(1, "hour", 0, 23, &[])? as u32,
            days_of_month: field(2, "day-of-month", 1, 31, &[])? as u32,
            months: field(3, "month", 1, 12, &MONTHS)? as u16,
            // 7 is Sunday too.
            days_of_week: ((dow | (dow >> 7)) & 0x7f) as u8,
            days_either: !parts[2].starts_with('*') && !parts[4].starts_with('*'),
        })
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl CronSchedule {
    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.days_either {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first local time after `after` (to the minute) that this schedule fires;
    /// `None` if it never does within five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        let start = after.naive_local().with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut date = start.date();
        let last = date + Duration::days(5 * 366);
        let mut first_day = true;
        while date <= last {
            if self.day_matches(date) {
                let (from_h, from_m) = match first_day {
                    true => (start.hour(), start.minute()),
                    false => (0, 0),
                };
                for h in (from_h..24).filter(|h| self.hours & (1 << h) != 0) {
                    let m0 = if h == from_h { from_m } else { 0 };
                    for m in (m0..60).filter(|m| self.minutes & (1 << m) != 0) {
                        let naive =
                            NaiveDateTime::new(date, chrono::NaiveTime::from_hms_opt(h, m, 0)?);
                        // Skipped by DST: no such local time; repeated: the first.
                        if let Some(t) = Local.from_local_datetime(&naive).earliest() {
                            if t > after {
                                return Some(t);
                            }
                        }
                    }
                }
            }
            date = date.succ_opt()?;
            first_day = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    /// The next `n` firings after a Wednesday, 2026-07-01 12:00 (no DST change nearby).
    fn fires(text: &str, n: usize) -> Vec<String> {
        let s: CronSchedule = text.parse().unwrap();
        let mut t = at(2026, 7, 1, 12, 0);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.format("%a %m-%d %H:%M").to_string()
            })
            .collect()
    }

    #[test]
    fn the_examples_of_crontab_5() {
        // "run five minutes after midnight, every day"
        assert_eq!(
            fires("5 0 * * *", 2),
            ["Thu 07-02 00:05", "Fri 07-03 00:05"]
        );
        // "run at 2:15pm on the first of every month"
        assert_eq!(
            fires("15 14 1 * *", 2),
            ["Wed 07-01 14:15", "Sat 08-01 14:15"]
        );
        // "run at 10 pm on weekdays"
        assert_eq!(
            fires("0 22 * * 1-5", 3),
            ["Wed 07-01 22:00", "Thu 07-02 22:00", "Fri 07-03 22:00"]
        );
        assert_eq!(fires("0 22 * * 1-5", 4)[3], "Mon 07-06 22:00");
        // "run 23 minutes after midn, 2am, 4am ..., everyday"
        assert_eq!(
            fires("23 0-23/2 * * *", 3),
            ["Wed 07-01 12:23", "Wed 07-01 14:23", "Wed 07-01 16:23"]
        );
        // "run at 5 after 4 every Sunday"
        assert_eq!(
            fires("5 4 * * sun", 2),
            ["Sun 07-05 04:05", "Sun 07-12 04:05"]
        );
        // "run at 4:30am on the 1st and 15th of each month, plus every Friday"
        assert_eq!(
            fires("30 4 1,15 * 5", 4),
            [
                "Fri 07-03 04:30",
                "Fri 07-10 04:30",
                "Wed 07-15 04:30",
                "Fri 07-17 04:30"
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 1st, and every Monday.
        assert_eq!(
            fires("0 0 1 * 1", 4),
            [
                "Mon 07-06 00:00",
                "Mon 07-13 00:00",
                "Mon 07-20 00:00",
                "Mon 07-27 00:00"
            ]
        );
        assert_eq!(fires("0 0 1 * 1", 5)[4], "Sat 08-01 00:00");
        // With one of them '*', the other alone decides.
        assert_eq!(fires("0 0 1 * *", 1), ["Sat 08-01 00:00"]);
        assert_eq!(fires("0 0 * * 1", 1), ["Mon 07-06 00:00"]);
        // A step over '*' still counts as restricted only if it does not start with '*'.
        assert_eq!(fires("0 0 */1 * 1", 1), ["Mon 07-06 00:00"]);
    }

    #[test]
    fn steps_over_ranges_names_and_sunday_as_7() {
        let s: CronSchedule = "1-7/2 * * * *".parse().unwrap();
        assert_eq!(s.minutes, (1 << 1) | (1 << 3) | (1 << 5) | (1 << 7));
        let s: CronSchedule = "10/20 * * * *".parse().unwrap();
        assert_eq!(s.minutes, (1 << 10) | (1 << 30) | (1 << 50));
        assert_eq!(fires("0 9 * * 7", 1), ["Sun 07-05 09:00"]);
        assert_eq!(fires("0 9 * * mon-fri", 1), ["Thu 07-02 09:00"]);
        assert_eq!(fires("0 0 1 jan *", 1), ["Fri 01-01 00:00"]);
        assert_eq!(fires("@weekly", 1), ["Sun 07-05 00:00"]);
        assert_eq!(
            fires("*/15 * * * *", 2),
            ["Wed 07-01 12:15", "Wed 07-01 12:30"]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever a config holds, a schedule parses or says why; one that parses
        /// answers `next_after` without panicking.
        #[test]
        fn arbitrary_schedule_text_never_panics(text in "[0-9a-z*/,@ -]{0,30}") {
            if let Ok(s) = text.parse::<CronSchedule>() {
                let _ = s.next_after(at(2026, 7, 1, 12, 0));
            }
        }
    }

    #[test]
    fn impossible_or_malformed_schedules() {
        let never: CronSchedule = "0 0 30 2 *".parse().unwrap();
        assert_eq!(never.next_after(at(2026, 7, 1, 12, 0)), None);
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "x * * * *",
        ] {
            let e = bad.parse::<CronSchedule>().unwrap_err();
            assert!(e.contains("invalid schedule"), "{bad}: {e}");
        }
    }

    fn next(cron: &str, from: (i32, u32, u32, u32, u32)) -> chrono::DateTime<chrono::Local> {
        let s: CronSchedule = cron.parse().unwrap();
        let t = chrono::Local
            .with_ymd_and_hms(from.0, from.1, from.2, from.3, from.4, 0)
            .unwrap();
        s.next_after(t).unwrap()
    }

    #[test]
    fn crontab_lines_parse_with_crontab_semantics() {
        // 2026-11-25 is a Wednesday.
        let n = next("*/15 * * * *", (2026, 11, 25, 10, 7));
        assert_eq!((n.hour(), n.minute()), (10, 15));
        let n = next("30 4 * * 0", (2026, 11, 25, 10, 7));
        assert_eq!(n.weekday(), chrono::Weekday::Sun);
        assert_eq!((n.hour(), n.minute()), (4, 30));
        let n = next("0 0 * * 7", (2026, 11, 25, 10, 7));
        assert_eq!(n.weekday(), chrono::Weekday::Sun);
        let n = next("0 0 * * 1-5", (2026, 11, 27, 10, 7)); // Friday → Monday
        assert_eq!(n.weekday(), chrono::Weekday::Mon);
        let n = next("0 0 * * 6-7", (2026, 11, 23, 10, 7)); // Monday → Saturday
        assert_eq!(n.weekday(), chrono::Weekday::Sat);
        let n = next("0 0 * * sun", (2026, 11, 25, 10, 7));
        assert_eq!(n.weekday(), chrono::Weekday::Sun);
        let n = next("@daily", (2026, 11, 25, 10, 7));
        assert_eq!((n.day(), n.hour()), (26, 0));
    }

    #[test]
    fn bad_crontab_lines_are_rejected_with_reason() {
        let e = "* * * *".parse::<CronSchedule>().unwrap_err();
        assert!(e.contains("5 fields"), "{e}");
        assert!("61 * * * *".parse::<CronSchedule>().is_err());
        assert!("0 0 * * 9"
            .parse::<CronSchedule>()
            .unwrap_err()
            .contains("out of range"));
        assert!("0 0 0 0 0 0".parse::<CronSchedule>().is_err());
    }
}
