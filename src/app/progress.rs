//! indicatif drawing of [`crate::progress::Progress`]: on stderr, only on a
//! terminal, never with --quiet or --json. A bar with the total,
//! percentage, rate and ETA when the source knows how much work there is,
//! a spinner counting keys when it does not.
//!
//! What is drawn is decided by pure functions ([`layout`], [`rate_text`],
//! [`eta_text`], ...) that the tests check; indicatif only paints them.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressState, ProgressStyle};

use crate::progress::{NoProgress, Progress, Total};
use crate::records::SelectedSize;
use crate::selection::Selection;

/// A progress bar (or spinner) on stderr.
pub struct Bar {
    bar: ProgressBar,
    /// Payload bytes done so far.
    bytes: AtomicU64,
    /// Payload bytes of the whole run, once announced.
    total_bytes: Mutex<Option<u64>>,
}

impl Progress for Bar {
    fn total(&self, total: Total) {
        if let Layout::Bar { keys, estimate } = layout(Some(total)) {
            self.bar.set_length(keys);
            self.bar.set_style(style(Layout::Bar { keys, estimate }));
        }
        *self.total_bytes.lock().unwrap_or_else(|e| e.into_inner()) = total.bytes;
    }

    fn stage(&self, label: &str) {
        self.bar.set_prefix(label.to_string());
    }

    fn advance(&self, keys: u64, bytes: u64) {
        self.bar.inc(keys);
        // An estimate may fall short of the keys there are: grow the bar
        // rather than sit at 100% with an ETA of nothing.
        let pos = self.bar.position();
        if self.bar.length().is_some_and(|len| pos > len) {
            self.bar.set_length(pos);
        }
        let done = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = *self.total_bytes.lock().unwrap_or_else(|e| e.into_inner());
        self.bar.set_message(bytes_text(done, total));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    /// A run that ends in an error leaves no stale bar above its message.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

/// Whether progress is drawn: never with --quiet or --json, only when
/// stderr is a terminal.
pub fn wanted(global: &super::GlobalOpts, stderr_is_terminal: bool) -> bool {
    !global.quiet && !global.json && stderr_is_terminal
}

/// A spinner counting keys and bytes (a bar once [`Progress::total`] is
/// called), or nothing when not wanted.
pub fn key_progress(global: &super::GlobalOpts) -> Box<dyn Progress> {
    if !wanted(global, std::io::stderr().is_terminal()) {
        return Box::new(NoProgress);
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(style(Layout::Spinner));
    bar.enable_steady_tick(Duration::from_millis(120));
    Box::new(Bar {
        bar,
        bytes: AtomicU64::new(0),
        total_bytes: Mutex::new(None),
    })
}

/// The total a source's up-front size gives, when it is one: the size of
/// an archive's selected blocks (or of the mirror's rows) is exact unless
/// `--match` picks keys inside them, when it is only an upper bound, and a
/// bar that stops short of its end would mislead.
pub fn known_total(size: Option<SelectedSize>, selection: &Selection) -> Option<Total> {
    let size = size.filter(|_| selection.matches.is_empty())?;
    Some(Total {
        keys: size.keys,
        bytes: Some(size.payload_bytes),
        estimate: false,
    })
}

/// What is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Open-ended work: a spinner with the count, rate and elapsed time.
    Spinner,
    /// Known work: a bar with the total, percentage, rate and ETA.
    Bar { keys: u64, estimate: bool },
}

/// A bar when the total is known and not empty (a bar of nothing would
/// show 100% from the start), a spinner otherwise.
pub fn layout(total: Option<Total>) -> Layout {
    match total {
        Some(t) if t.keys > 0 => Layout::Bar {
            keys: t.keys,
            estimate: t.estimate,
        },
        _ => Layout::Spinner,
    }
}

fn style(layout: Layout) -> ProgressStyle {
    let template = match layout {
        Layout::Spinner => "{spinner} {prefix} {human_pos} keys {msg:.dim} {rate} [{elapsed}]",
        Layout::Bar {
            estimate: false, ..
        } => {
            "{prefix} [{bar:25}] {human_pos}/{human_len} keys ({percent}%) {msg:.dim} {rate} {eta_left}"
        }
        Layout::Bar { estimate: true, .. } => {
            "{prefix} [{bar:25}] {human_pos}/~{human_len} keys ({percent}%) {msg:.dim} {rate} {eta_left}"
        }
    };
    let fallback = match layout {
        Layout::Spinner => ProgressStyle::default_spinner(),
        Layout::Bar { .. } => ProgressStyle::default_bar(),
    };
    ProgressStyle::with_template(template)
        .unwrap_or(fallback)
        .progress_chars("=> ")
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate_text(s.per_sec(), "keys"));
        })
        .with_key(
            "eta_left",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let left = s.len().map(|len| len.saturating_sub(s.pos()));
                let _ = w.write_str(&eta_text(left, s.per_sec()));
            },
        )
}

/// A rate for people: `512 keys/s`, `12.3k keys/s`, `1.2M keys/s`; one
/// decimal only where it says something.
pub fn rate_text(per_sec: f64, unit: &str) -> String {
    const PREFIXES: [&str; 5] = ["", "k", "M", "G", "T"];
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return format!("0 {unit}/s");
    }
    let (mut scaled, mut prefix) = (per_sec, 0);
    // Scale on the rounded value, so 999.7 is `1.0k`, not `1000`.
    while scaled >= 999.5 && prefix + 1 < PREFIXES.len() {
        scaled /= 1000.0;
        prefix += 1;
    }
    let decimals = match prefix {
        0 if scaled < 9.95 => 1,
        0 => 0,
        _ if scaled < 99.95 => 1,
        _ => 0,
    };
    format!("{scaled:.decimals$}{} {unit}/s", PREFIXES[prefix])
}

/// Beyond this an ETA says nothing but "very long" (a stalled run).
const ETA_CAP_SECS: u64 = 99 * 86_400;

/// `ETA 3m 05s` for `left` keys at `per_sec`; `ETA ?` before there is a
/// rate; nothing when the total is unknown.
pub fn eta_text(left: Option<u64>, per_sec: f64) -> String {
    let Some(left) = left else {
        return String::new();
    };
    if left == 0 {
        return "ETA 0s".to_string();
    }
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "ETA ?".to_string();
    }
    let secs = (left as f64 / per_sec).ceil();
    if secs > ETA_CAP_SECS as f64 {
        return format!("ETA >{}", duration_text(ETA_CAP_SECS));
    }
    format!("ETA {}", duration_text(secs as u64))
}

/// `45s`, `3m 05s`, `2h 07m`, `3d 04h`.
pub fn duration_text(secs: u64) -> String {
    let (m, s) = (secs / 60, secs % 60);
    let (h, m_of_h) = (m / 60, m % 60);
    let (d, h_of_d) = (h / 24, h % 24);
    let mut out = String::new();
    let _ = match () {
        _ if secs < 60 => write!(out, "{s}s"),
        _ if m < 60 => write!(out, "{m}m {s:02}s"),
        _ if h < 24 => write!(out, "{h}h {m_of_h:02}m"),
        _ => write!(out, "{d}d {h_of_d:02}h"),
    };
    out
}

/// Payload bytes done, and of how many when known; nothing before any
/// (a sink that counts only keys, such as a restore, never shows bytes).
pub fn bytes_text(done: u64, total: Option<u64>) -> String {
    match total {
        _ if done == 0 => String::new(),
        Some(total) if total > 0 => format!("{} of {}", HumanBytes(done), HumanBytes(total)),
        _ => HumanBytes(done).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::GlobalOpts;
    use crate::pattern::Glob;

    #[test]
    fn rates_have_units_and_at_most_one_decimal() {
        assert_eq!(rate_text(0.0, "keys"), "0 keys/s");
        assert_eq!(rate_text(f64::NAN, "keys"), "0 keys/s");
        assert_eq!(rate_text(0.4567, "keys"), "0.5 keys/s");
        assert_eq!(rate_text(3.24159, "keys"), "3.2 keys/s");
        assert_eq!(rate_text(512.3456, "keys"), "512 keys/s");
        assert_eq!(rate_text(999.7, "keys"), "1.0k keys/s");
        assert_eq!(rate_text(12_345.678, "keys"), "12.3k keys/s");
        assert_eq!(rate_text(123_456.0, "keys"), "123k keys/s");
        assert_eq!(rate_text(999_600.0, "keys"), "1.0M keys/s");
        assert_eq!(rate_text(2_500_000.0, "rows"), "2.5M rows/s");
    }

    #[test]
    fn eta_reads_as_a_duration() {
        assert_eq!(eta_text(None, 100.0), "");
        assert_eq!(eta_text(Some(0), 0.0), "ETA 0s");
        assert_eq!(eta_text(Some(10), 0.0), "ETA ?");
        assert_eq!(eta_text(Some(10), 4.0), "ETA 3s");
        assert_eq!(eta_text(Some(65_000), 1000.0), "ETA 1m 05s");
        assert_eq!(eta_text(Some(7_620_000), 1000.0), "ETA 2h 07m");
        assert_eq!(eta_text(Some(u64::MAX), 1e-300), "ETA >99d 00h");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(3600), "1h 00m");
        assert_eq!(duration_text(86_400 * 3 + 3600 * 4), "3d 04h");
    }

    #[test]
    fn bytes_show_their_total_when_known() {
        assert_eq!(bytes_text(0, None), "");
        assert_eq!(bytes_text(2048, None), "2.00 KiB");
        assert_eq!(bytes_text(0, Some(1 << 20)), "");
        assert_eq!(bytes_text(1 << 19, Some(1 << 20)), "512.00 KiB of 1.00 MiB");
        assert_eq!(bytes_text(512, Some(0)), "512 B");
    }

    #[test]
    fn a_bar_only_with_a_total_of_some_keys() {
        assert_eq!(layout(None), Layout::Spinner);
        let total = |keys, estimate| Total {
            keys,
            bytes: None,
            estimate,
        };
        assert_eq!(layout(Some(total(0, false))), Layout::Spinner);
        assert_eq!(
            layout(Some(total(7, true))),
            Layout::Bar {
                keys: 7,
                estimate: true
            }
        );
    }

    #[test]
    fn an_index_size_is_a_total_unless_match_narrows_it() {
        let size = Some(SelectedSize {
            payload_bytes: 100,
            keys: 4,
        });
        let all = Selection::default();
        let total = known_total(size, &all).expect("a total");
        assert_eq!(
            (total.keys, total.bytes, total.estimate),
            (4, Some(100), false)
        );
        assert_eq!(known_total(None, &all), None);
        let matching = Selection {
            matches: vec![Glob::new("*:emotives:a*")],
            ..Selection::default()
        };
        assert_eq!(known_total(size, &matching), None);
    }

    #[test]
    fn progress_only_on_a_terminal_and_never_for_quiet_or_json() {
        let plain = GlobalOpts::default();
        assert!(wanted(&plain, true));
        assert!(!wanted(&plain, false));
        let quiet = GlobalOpts {
            quiet: true,
            ..plain.clone()
        };
        let json = GlobalOpts {
            json: true,
            ..plain.clone()
        };
        assert!(!wanted(&quiet, true) && !wanted(&json, true));
    }
}
