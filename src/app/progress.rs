//! indicatif drawing of [`crate::progress::Progress`]: on stderr, only on a
//! terminal, never with --quiet or --json.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::{NoProgress, Progress};

pub struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, label: &str) {
        self.0.set_prefix(label.to_string());
    }

    fn advance(&self, keys: u64, bytes: u64) {
        self.0.inc(keys);
        let total = self.0.message().parse::<u64>().unwrap_or(0) + bytes;
        self.0.set_message(total.to_string());
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A spinner counting keys and bytes, or nothing when not wanted.
pub fn key_progress(global: &super::GlobalOpts) -> Box<dyn Progress> {
    if global.quiet || global.json || !std::io::stderr().is_terminal() {
        return Box::new(NoProgress);
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} {pos} keys, {msg:.dim} payload bytes, {per_sec} [{elapsed}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    Box::new(Bar(bar))
}
