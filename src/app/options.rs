//! Parsed arguments ([`crate::cli`]) turned into library options.

use anyhow::Context;

use crate::cli::{ModeArg, PaceArgs, PolicyArg, SelectArgs, WriteArgs};
use crate::format::archive::SelectionSpec;
use crate::kato::parse_display_bytes;
use crate::net::pace::{Limits, Pace, Patience};
use crate::pattern::Glob;
use crate::plan::merge::{Policies, Policy};
use crate::selection::Selection;
use crate::sink::redis::{Mode, RestoreOptions, Target};
use crate::stop::Stop;

/// `--kb`, `--global`, `--foreign`, `--category`, `--match` as a
/// selection.
pub fn selection(args: &SelectArgs) -> Selection {
    Selection {
        kbs: globs(&args.kbs),
        kato: args.global,
        foreign: args.foreign,
        categories: args.categories.clone(),
        matches: globs(&args.matches),
        allow_empty: args.allow_empty,
    }
}

/// A selection of kb_ids only (`mirror`, `rebuild`, `check`).
pub fn kb_selection(kbs: &[String], allow_empty: bool) -> Selection {
    Selection {
        kbs: globs(kbs),
        allow_empty,
        ..Selection::default()
    }
}

/// The selection as the archive header records it.
pub fn selection_spec(args: &SelectArgs) -> SelectionSpec {
    SelectionSpec {
        kbs: args.kbs.iter().map(|k| parse_display_bytes(k)).collect(),
        global: args.global,
        foreign: args.foreign,
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
        kato: spec.global,
        foreign: spec.foreign,
        categories: spec.categories.clone(),
        matches: globs(&spec.matches),
        allow_empty: true,
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
        ModeArg::Merge => Mode::Merge,
    }
}

/// Refuses write options that contradict each other, before anything is
/// connected or read.
pub fn check_write_args(args: &WriteArgs) -> anyhow::Result<()> {
    if !args.policies.is_empty() && args.mode != ModeArg::Merge {
        anyhow::bail!("--policy only applies to --mode merge; add --mode merge, or drop --policy");
    }
    Ok(())
}

/// KATO's default merge policies with the `--policy` overrides (the last
/// one given for a category wins).
pub fn policies(args: &WriteArgs) -> Policies {
    let mut policies = Policies::default();
    for (category, policy) in &args.policies {
        policies.set(*category, policy_of(*policy));
    }
    policies
}

fn policy_of(arg: PolicyArg) -> Policy {
    match arg {
        PolicyArg::Max => Policy::Max,
        PolicyArg::Union => Policy::Union,
        PolicyArg::Keep => Policy::Keep,
        PolicyArg::Replace => Policy::Replace,
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
        policies: policies(args),
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

/// Reads the identity files of `--identity` (each named if unreadable).
pub fn keyring(files: &[std::path::PathBuf]) -> anyhow::Result<crate::format::encryption::Keyring> {
    let texts = read_texts(files, "identity")?;
    Ok(crate::format::encryption::Keyring::new(texts))
}

/// The recipients of `--encrypt-to` / `--recipients-file`; `None` when no
/// encryption was asked for.
pub fn recipients(
    args: &crate::cli::EncryptArgs,
) -> anyhow::Result<Option<crate::format::encryption::Recipients>> {
    let files = read_texts(&args.recipients_files, "recipients")?;
    Ok(crate::format::encryption::Recipients::parse(
        &args.encrypt_to,
        &files,
    )?)
}

fn read_texts(files: &[std::path::PathBuf], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            std::fs::read_to_string(path)
                .map(|text| (name.clone(), text))
                .with_context(|| format!("reading {what} file {name}"))
        })
        .collect()
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
