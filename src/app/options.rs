//! Parsed arguments ([`crate::cli`]) turned into library options.

use crate::cli::{ModeArg, PaceArgs, SelectArgs, WriteArgs};
use crate::format::archive::SelectionSpec;
use crate::kato::parse_display_bytes;
use crate::net::pace::{Limits, Pace, Patience};
use crate::pattern::Glob;
use crate::selection::Selection;
use crate::sink::redis::{Mode, RestoreOptions, Target};
use crate::stop::Stop;

/// `--kb`, `--category`, `--match` as a selection.
pub fn selection(args: &SelectArgs) -> Selection {
    Selection {
        kbs: globs(&args.kbs),
        categories: args.categories.clone(),
        matches: globs(&args.matches),
    }
}

/// The selection as the archive header records it.
pub fn selection_spec(args: &SelectArgs) -> SelectionSpec {
    SelectionSpec {
        kbs: args.kbs.iter().map(|k| parse_display_bytes(k)).collect(),
        categories: args.categories.clone(),
        matches: args
            .matches
            .iter()
            .map(|m| parse_display_bytes(m))
            .collect(),
    }
}

/// The selection an archive header records, as a selection: what the
/// archive covers.
pub fn covered(spec: &SelectionSpec) -> Selection {
    let globs = |patterns: &[Vec<u8>]| patterns.iter().map(|p| Glob::new(p.clone())).collect();
    Selection {
        kbs: globs(&spec.kbs),
        categories: spec.categories.clone(),
        matches: globs(&spec.matches),
    }
}

/// Globs given in display notation (non-UTF-8 bytes as \xNN).
pub fn globs(patterns: &[String]) -> Vec<Glob> {
    patterns
        .iter()
        .map(|p| Glob::new(parse_display_bytes(p)))
        .collect()
}

/// `--mode` as the restore engine's mode.
pub fn mode(arg: ModeArg) -> Mode {
    match arg {
        ModeArg::Missing => Mode::Missing,
        ModeArg::Replace => Mode::Replace,
    }
}

/// The restore options, with the memory guard for `target` unless
/// `--force`; the run ends early once `stop` is requested.
pub fn restore_options(args: &WriteArgs, target: &Target, stop: Stop) -> RestoreOptions {
    RestoreOptions {
        stop,
        memory_budget: target.memory_budget().filter(|_| !args.force),
        max_payload: target.max_bulk,
        // Logical chunks stay well below the server's argument limit.
        max_bytes: (target.max_bulk / 4).clamp(1, 1 << 20) as usize,
        mode: mode(args.mode),
        renames: args
            .renames
            .iter()
            .map(|(f, t)| (parse_display_bytes(f), parse_display_bytes(t)))
            .collect(),
        dry_run: args.dry_run,
        force_logical: args.logical,
        ..RestoreOptions::default()
    }
}

/// `--keep-*` as a retention policy; none given is the runbook's 30 days.
pub fn retention_policy(
    args: &crate::cli::backup::RetentionArgs,
) -> anyhow::Result<crate::plan::retention::Policy> {
    use crate::plan::retention::{Policy, Within};
    let within = match &args.keep_within {
        Some(text) => text
            .parse::<Within>()
            .map_err(|e| anyhow::anyhow!("--keep-within: {e}"))?,
        None => Within::default(),
    };
    let policy = Policy {
        last: args.keep_last.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
        monthly: args.keep_monthly.unwrap_or(0),
        within,
    };
    let none_given = args.keep_last.is_none()
        && args.keep_daily.is_none()
        && args.keep_weekly.is_none()
        && args.keep_monthly.is_none()
        && args.keep_within.is_none();
    Ok(if none_given {
        Policy::runbook_default()
    } else {
        policy
    })
}

/// `--max-keys-per-sec`, `--max-bytes-per-sec` and `--busy-timeout`; the
/// waits for a loading or busy server are told on stderr.
pub fn pace(args: &PaceArgs) -> Pace {
    Pace {
        limits: Limits {
            keys_per_sec: args.max_keys_per_sec,
            bytes_per_sec: args.max_bytes_per_sec,
        },
        patience: Patience::new(std::time::Duration::from_secs(args.busy_timeout))
            .with_notify(|message| eprintln!("kbdump: {message}")),
    }
}
