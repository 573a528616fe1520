//! `--as-of TIME`: an instant as an operator writes it during an incident.
//!
//! Accepted: an RFC 3339 / ISO 8601 time (`2026-12-01T09:30:00Z`, with
//! fractional seconds or a `+02:00` offset), the same with a space instead
//! of `T` and no zone (taken as UTC, and said so in `--help`), a date alone
//! (midnight UTC), `@SECONDS` since the Unix epoch, or a duration before now
//! (`90min`, `2h ago`, `1d12h`).

use super::retention::days_from_civil;

/// A parsed `--as-of`: an absolute instant or a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instant {
    /// Unix milliseconds.
    At(i64),
    /// This many milliseconds before now.
    Ago(i64),
}

impl Instant {
    /// Unix milliseconds, given the instant now.
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            Instant::At(ms) => ms,
            Instant::Ago(ms) => now_ms - ms,
        }
    }
}

/// Parses an instant; `duration` parses the relative form (the CLI's
/// duration syntax).
pub fn parse(
    text: &str,
    duration: impl Fn(&str) -> Result<i64, String>,
) -> Result<Instant, String> {
    let s = text.trim();
    if let Some(secs) = s.strip_prefix('@') {
        let secs: i64 = secs
            .parse()
            .map_err(|_| format!("invalid time {text:?}: expected @ and seconds since 1970"))?;
        return Ok(Instant::At(secs.saturating_mul(1000)));
    }
    let invalid = || {
        format!(
            "invalid time {text:?}: expected such as 2026-12-01T09:30:00Z, \
             2026-12-01 09:30:00 (UTC), 2026-12-01, @1764581400, or 2h ago"
        )
    };
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return absolute(s).map(Instant::At).ok_or_else(invalid);
    }
    let relative = s.strip_suffix("ago").map(str::trim_end).unwrap_or(s);
    duration(relative).map(Instant::Ago).map_err(|_| invalid())
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]][Z|±HH:MM]]` as unix milliseconds.
fn absolute(s: &str) -> Option<i64> {
    let (date, rest) = s.split_at(10);
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(day_ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (clock, offset_ms) = split_zone(rest)?;
    Some(day_ms + time_of_day(clock)? - offset_ms)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The time of day and the zone's offset from UTC in ms (none: UTC).
fn split_zone(s: &str) -> Option<(&str, i64)> {
    if let Some(clock) = s.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let Some(at) = s.rfind(['+', '-']) else {
        return Some((s, 0));
    };
    let (clock, zone) = s.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (h, m) = zone[1..].split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    Some((clock, sign * (h * 3_600_000 + m * 60_000)))
}

/// `HH:MM[:SS[.fff]]` in ms.
fn time_of_day(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let three: String = frac.chars().chain("000".chars()).take(3).collect();
        three.parse::<i64>().ok()?
    };
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(s: &str) -> Result<i64, String> {
        let n: i64 = s
            .strip_suffix('h')
            .and_then(|n| n.parse().ok())
            .ok_or("bad")?;
        Ok(n * 3_600_000)
    }

    #[test]
    fn absolute_forms_agree() {
        let want = Instant::At(1_764_581_400_000); // 2025-12-01T09:30:00Z
        for text in [
            "2025-12-01T09:30:00Z",
            "2025-12-01T09:30:00.000Z",
            "2025-12-01 09:30:00",
            "2025-12-01T09:30",
            "2025-12-01T11:30:00+02:00",
            "2025-12-01T08:00:00-01:30",
            "@1764581400",
        ] {
            assert_eq!(parse(text, hours), Ok(want), "{text}");
        }
        assert_eq!(
            parse("2025-12-01T09:30:00.25Z", hours),
            Ok(Instant::At(1_764_581_400_250))
        );
        assert_eq!(
            parse("2025-12-01", hours),
            Ok(Instant::At(1_764_547_200_000))
        );
    }

    #[test]
    fn relative_forms_count_back_from_now() {
        assert_eq!(parse("2h ago", hours), Ok(Instant::Ago(7_200_000)));
        assert_eq!(parse("2h", hours), Ok(Instant::Ago(7_200_000)));
        assert_eq!(Instant::Ago(1000).resolve(5000), 4000);
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "2025-13-01",
            "2025-02-30",
            "2025-12-01T25:00:00Z",
            "2025-12-01T09:30:00+2",
            "2025-12-01X09:30",
            "@soon",
            "yesterday",
            "",
        ] {
            assert!(parse(text, hours).is_err(), "{text:?}");
        }
    }
}
