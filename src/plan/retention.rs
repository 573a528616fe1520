//! Which backups to keep: restic's `forget --keep-*` rules over backup
//! times, with the instant passed in.
//!
//! The semantics are restic's (`internal/restic/snapshot_policy.go`), so an
//! operator who knows one knows the other:
//!
//! - backups are walked newest first;
//! - `--keep-last N` keeps the N newest;
//! - `--keep-daily/-weekly/-monthly N`: for the last N days (weeks,
//!   months) that have a backup, the newest backup of each; when a rule
//!   still has counts left at the oldest backup, that one is kept too
//!   (it stretches the history kept);
//! - `--keep-within DURATION` keeps every backup made within DURATION
//!   *of the newest backup* (not of now: backups that stopped coming are
//!   never all expired), DURATION being years, months, days and hours
//!   (`30d`, `1y6m`, `2d12h`) with calendar arithmetic;
//! - a policy with nothing set keeps everything.
//!
//! Days, weeks (ISO 8601) and months are UTC. Unlike restic, the newest
//! backup is kept whatever the policy says (it is always the one a restore
//! would reach for), and backups dated in the future do not move the
//! "newest" reference of `--keep-within`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// A `--keep-within` duration: calendar years, months, days and hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Within {
    pub fn days(days: i32) -> Within {
        Within {
            days,
            ..Within::default()
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Within::default()
    }

    /// The instant `self` before `at_ms` (Go's `AddDate` then `Add`, as
    /// restic computes it: month overflow normalises, 31 March minus one
    /// month is 3 March).
    pub fn before(&self, at_ms: i64) -> i64 {
        let (days, in_day) = (at_ms.div_euclid(DAY_MS), at_ms.rem_euclid(DAY_MS));
        let (y, m, d) = civil_from_days(days);
        let months =
            y * 12 + i64::from(m) - 1 - i64::from(self.years) * 12 - i64::from(self.months);
        let (y, m) = (months.div_euclid(12), months.rem_euclid(12) as u32 + 1);
        let days = days_from_civil(y, m, 1) + i64::from(d) - 1 - i64::from(self.days);
        days * DAY_MS + in_day - i64::from(self.hours) * HOUR_MS
    }
}

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number and a unit (y years, m months, d days, h hours), such as 30d, 2d12h or 1y6m")]
pub struct WithinError(pub String);

impl FromStr for Within {
    type Err = WithinError;

    fn from_str(s: &str) -> Result<Within, WithinError> {
        let err = || WithinError(s.to_string());
        let mut within = Within::default();
        let mut digits = String::new();
        let mut any = false;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: i32 = digits.parse().map_err(|_| err())?;
            digits.clear();
            let slot = match c {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(err()),
            };
            *slot = slot.checked_add(n).ok_or_else(err)?;
            any = true;
        }
        if !digits.is_empty() || !any {
            return Err(err());
        }
        Ok(within)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        let mut wrote = false;
        for (n, unit) in parts.into_iter().filter(|(n, _)| *n != 0) {
            write!(f, "{n}{unit}")?;
            wrote = true;
        }
        if !wrote {
            write!(f, "0h")?;
        }
        Ok(())
    }
}

/// The `--keep-*` rules. Zero counts and a zero duration are "not set".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub within: Within,
}

impl Policy {
    /// The runbook's "daily automated backups kept 30 days".
    pub fn runbook_default() -> Policy {
        Policy {
            within: Within::days(30),
            ..Policy::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "keep everything (no rule set)");
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (self.last, "latest"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if !self.within.is_zero() {
            parts.push(format!("all within {} of the newest", self.within));
        }
        write!(f, "keep {}", parts.join(", "))
    }
}

/// What the policy says about one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub keep: bool,
    /// The rules that keep it (empty when it goes).
    pub reasons: Vec<String>,
}

/// Decides for each backup time in `times_ms` (any order; the result is in
/// the same order) whether `policy` keeps it, `now_ms` being the present.
/// Equal times are ordered by their position (a later position is newer).
pub fn apply(times_ms: &[i64], policy: &Policy, now_ms: i64) -> Vec<Decision> {
    let mut decisions = vec![
        Decision {
            keep: policy.is_empty(),
            reasons: if policy.is_empty() {
                vec!["no retention rule set".into()]
            } else {
                Vec::new()
            },
        };
        times_ms.len()
    ];
    if policy.is_empty() || times_ms.is_empty() {
        return decisions;
    }
    let mut order: Vec<usize> = (0..times_ms.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((times_ms[i], i)));
    let latest = order
        .iter()
        .map(|&i| times_ms[i])
        .find(|&t| t <= now_ms)
        .unwrap_or(times_ms[order[0]]);
    let within_from = (!policy.within.is_zero()).then(|| policy.within.before(latest));
    let mut buckets = [
        Bucket::new(policy.last, Period::Each, "last"),
        Bucket::new(policy.daily, Period::Day, "daily"),
        Bucket::new(policy.weekly, Period::Week, "weekly"),
        Bucket::new(policy.monthly, Period::Month, "monthly"),
    ];
    let oldest = order.len() - 1;
    for (nr, &i) in order.iter().enumerate() {
        let decision = &mut decisions[i];
        if within_from.is_some_and(|from| times_ms[i] > from) {
            decision.reasons.push(format!("within {}", policy.within));
        }
        for bucket in &mut buckets {
            if bucket.left == 0 {
                continue;
            }
            let value = bucket.period.value(times_ms[i], nr);
            if bucket.last != Some(value) || nr == oldest {
                bucket.last = Some(value);
                bucket.left -= 1;
                decision.reasons.push(bucket.reason.to_string());
            }
        }
        if nr == 0 && decision.reasons.is_empty() {
            decision.reasons.push("newest backup".into());
        }
        decision.keep = !decision.reasons.is_empty();
    }
    decisions
}

/// One `--keep-<period> N` rule while the policy is applied.
struct Bucket {
    left: u32,
    period: Period,
    last: Option<i64>,
    reason: &'static str,
}

impl Bucket {
    fn new(count: u32, period: Period, reason: &'static str) -> Bucket {
        Bucket {
            left: count,
            period,
            last: None,
            reason,
        }
    }
}

#[derive(Clone, Copy)]
enum Period {
    /// Every backup is its own bucket (`--keep-last`).
    Each,
    Day,
    Week,
    Month,
}

impl Period {
    /// The bucket a backup at `ms` (the `nr`-th newest) falls into.
    fn value(self, ms: i64, nr: usize) -> i64 {
        let days = ms.div_euclid(DAY_MS);
        match self {
            Period::Each => nr as i64,
            Period::Day => days,
            Period::Week => {
                let (year, week) = iso_week(days);
                year * 100 + i64::from(week)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                y * 100 + i64::from(m)
            }
        }
    }
}

/// The ISO 8601 week-numbering year and week of a day since 1970-01-01.
pub fn iso_week(days: i64) -> (i64, u32) {
    // 1970-01-01 was a Thursday; Monday is 1.
    let weekday = (days + 3).rem_euclid(7) + 1;
    let thursday = days - weekday + 4;
    let (year, _, _) = civil_from_days(thursday);
    let ordinal = thursday - days_from_civil(year, 1, 1);
    (year, (ordinal / 7 + 1) as u32)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS + min * 60_000
    }

    fn kept(times: &[i64], policy: &Policy, now: i64) -> Vec<bool> {
        apply(times, policy, now).iter().map(|d| d.keep).collect()
    }

    #[test]
    fn calendar_helpers_round_trip() {
        for days in [-800_000, -1, 0, 1, 11_016, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        // ISO weeks: 2021-01-03 (Sunday) is in 2020-W53; 2024-12-30 in 2025-W01.
        assert_eq!(iso_week(days_from_civil(2021, 1, 3)), (2020, 53));
        assert_eq!(iso_week(days_from_civil(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week(days_from_civil(2024, 12, 30)), (2025, 1));
    }

    #[test]
    fn durations_parse_like_restic() {
        let w: Within = "2y5m7d3h".parse().unwrap();
        assert_eq!((w.years, w.months, w.days, w.hours), (2, 5, 7, 3));
        assert_eq!("30d".parse::<Within>().unwrap(), Within::days(30));
        assert_eq!(w.to_string(), "2y5m7d3h");
        for bad in ["", "30", "d", "3w", "1.5d", "-3d", "3d4"] {
            assert!(bad.parse::<Within>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn month_arithmetic_normalises_like_go() {
        let w = Within {
            months: 1,
            ..Within::default()
        };
        assert_eq!(w.before(at(2024, 3, 31, 5, 0)), at(2024, 3, 2, 5, 0));
        let w = Within {
            years: 1,
            hours: 6,
            ..Within::default()
        };
        assert_eq!(w.before(at(2024, 2, 29, 3, 0)), at(2023, 2, 28, 21, 0));
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let times = [1, 2, 3];
        assert_eq!(kept(&times, &Policy::default(), 10), [true, true, true]);
    }

    #[test]
    fn keep_within_counts_from_the_newest_backup_not_from_now() {
        let newest = at(2024, 5, 31, 3, 15);
        let times: Vec<i64> = (0..40).map(|d| newest - d * DAY_MS).collect();
        let now = newest + 90 * DAY_MS; // backups stopped three months ago
        let keep = kept(&times, &Policy::runbook_default(), now);
        // 30 days back from the newest: day 0..29 kept; day 30 is exactly
        // 30 days before and restic keeps only what is strictly after.
        assert!(keep[..30].iter().all(|k| *k), "{keep:?}");
        assert!(keep[30..].iter().all(|k| !*k), "{keep:?}");
    }

    #[test]
    fn several_backups_a_day_keep_the_newest_of_each_day() {
        let times = [
            at(2024, 5, 1, 3, 0),
            at(2024, 5, 1, 12, 0),
            at(2024, 5, 1, 18, 0),
            at(2024, 5, 2, 3, 0),
            at(2024, 5, 2, 9, 0),
            at(2024, 5, 3, 3, 0),
        ];
        let policy = Policy {
            daily: 2,
            ..Policy::default()
        };
        let now = at(2024, 5, 3, 4, 0);
        assert_eq!(
            kept(&times, &policy, now),
            [false, false, false, false, true, true]
        );
        let policy = Policy {
            daily: 5,
            ..Policy::default()
        };
        // Counts left at the oldest backup: it is kept too (restic).
        assert_eq!(
            kept(&times, &policy, now),
            [true, false, true, false, true, true]
        );
    }

    #[test]
    fn a_day_boundary_is_a_millisecond_wide() {
        let midnight = at(2024, 6, 1, 0, 0);
        let times = [midnight - 2 * HOUR_MS, midnight - 1, midnight];
        let policy = Policy {
            daily: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&times, &policy, midnight + 1), [false, true, true]);
        let policy = Policy {
            daily: 1,
            ..Policy::default()
        };
        assert_eq!(kept(&times, &policy, midnight + 1), [false, false, true]);
    }

    #[test]
    fn weekly_and_monthly_buckets_follow_the_calendar() {
        // Sundays and Mondays: a Sunday ends its ISO week.
        let times = [
            at(2024, 4, 28, 3, 0), // Sun, W17
            at(2024, 4, 29, 3, 0), // Mon, W18
            at(2024, 5, 5, 3, 0),  // Sun, W18
            at(2024, 5, 6, 3, 0),  // Mon, W19
        ];
        let weekly = Policy {
            weekly: 2,
            ..Policy::default()
        };
        let now = at(2024, 5, 7, 0, 0);
        assert_eq!(kept(&times, &weekly, now), [false, false, true, true]);
        let monthly = Policy {
            monthly: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&times, &monthly, now), [false, true, false, true]);
    }

    #[test]
    fn keep_last_and_the_newest_is_never_dropped() {
        let times = [10, 20, 30, 40];
        let last2 = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&times, &last2, 50), [false, false, true, true]);
        // A weekly rule of 1 already keeps the newest; a tiny keep-within too.
        let tiny = Policy {
            within: Within {
                hours: 1,
                ..Within::default()
            },
            ..Policy::default()
        };
        let days: Vec<i64> = (0..3).map(|d| d * DAY_MS).collect();
        assert_eq!(kept(&days, &tiny, 10 * DAY_MS), [false, false, true]);
    }

    #[test]
    fn a_backup_from_the_future_does_not_expire_the_present() {
        let now = at(2024, 5, 10, 0, 0);
        // A clock that jumped a year ahead wrote one backup.
        let times = [now - 2 * DAY_MS, now - DAY_MS, now + 365 * DAY_MS];
        let keep = kept(&times, &Policy::runbook_default(), now);
        assert_eq!(keep, [true, true, true]);
    }

    #[test]
    fn reasons_name_the_rules() {
        let policy = Policy {
            last: 1,
            daily: 1,
            within: Within::days(1),
            ..Policy::default()
        };
        let d = apply(&[0, DAY_MS * 3], &policy, DAY_MS * 4);
        assert_eq!(d[1].reasons, ["within 1d", "last", "daily"]);
        assert!(!d[0].keep);
        assert_eq!(
            policy.to_string(),
            "keep 1 latest, 1 daily, all within 1d of the newest"
        );
    }
}
