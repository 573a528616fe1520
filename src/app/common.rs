//! Glue several commands share: archive inputs, the ClickHouse and Redis
//! write connections, and the restore engine run with its undo archive.

use std::future::Future;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::options::globs;
use super::progress::key_progress;
use super::GlobalOpts;
use crate::cli::{RedisArgs, TlsArgs};
use crate::flow;
use crate::flow::preflight::{dbsize, rename_targets};
use crate::kato::attribute::KeyspaceCensus;
use crate::kato::display_bytes;
use crate::net::clickhouse::{Ch, ChTarget};
use crate::net::redis::{redact_url, Endpoint, Password, RedisConn, TlsFiles};
use crate::progress::Total;
use crate::records::SourceItem;
use crate::selection::Selection;
use crate::sink::archive::UndoSummary;
use crate::sink::redis::{KbOccupancy, Mode, RestoreOptions, RestoreSummary, Target};
use crate::source::archive::ArchiveSource;
use crate::source::{SourceError, SourceTask};

pub use crate::source::archive::ArchiveInput;

/// The source's own verdict: an archive that could not be read at all is
/// an error even though no record failed.
pub async fn source_outcome<T>(task: SourceTask<T>, input: &ArchiveInput) -> anyhow::Result<T> {
    task.finish().await.map_err(|e| match e {
        SourceError::Archive(e) => anyhow::anyhow!("{}: {e}", input.name()),
        other => other.into(),
    })
}

/// What an archive holds by group, from its index, after checking that
/// every `--kb` names one of its kb_ids ([`Selection::check_kbs`]). `None`
/// for a stream or a cut file, which have no index to check up front:
/// [`watch_kbs`] and [`check_read_kbs`] check what was read instead.
pub fn check_archive(
    source: &ArchiveSource,
    input: &ArchiveInput,
    selection: &Selection,
) -> anyhow::Result<Option<KeyspaceCensus>> {
    let Some(cells) = source.indexed_cells() else {
        return Ok(None);
    };
    let census = KeyspaceCensus::from_cells(cells.iter().map(|(kb, c, n)| (&kb[..], *c, *n)));
    selection.check_kbs(&census.kb_ids(), &format!("archive {}", input.name()))?;
    Ok(Some(census))
}

fn read_place(input: &ArchiveInput) -> String {
    format!(
        "the records read from {} (read front to back without an index; `kbdump inspect` on the file lists its kb_ids)",
        input.name()
    )
}

/// The task that notes the kb_ids of a stream's records (see [`watch_kbs`]).
pub type KbWatcher = JoinHandle<Vec<Vec<u8>>>;

/// Passes a stream's records on, noting their kb_ids, when `--kb` has to
/// be checked after the read (an archive without an index). `None` when
/// there is nothing to check.
pub fn watch_kbs(
    items: mpsc::Receiver<SourceItem>,
    selection: &Selection,
    indexed: bool,
) -> (mpsc::Receiver<SourceItem>, Option<KbWatcher>) {
    if indexed || selection.kbs.is_empty() || selection.allow_empty {
        return (items, None);
    }
    let (tx, rx) = mpsc::channel(1024);
    let watcher = tokio::spawn(async move {
        let mut items = items;
        let mut seen = std::collections::BTreeSet::new();
        while let Some(item) = items.recv().await {
            if let SourceItem::Record(r) = &item {
                if !seen.contains(&r.kb_id) {
                    seen.insert(r.kb_id.clone());
                }
            }
            if tx.send(item).await.is_err() {
                break;
            }
        }
        seen.into_iter().collect()
    });
    (rx, Some(watcher))
}

/// The check of [`check_archive`] for an archive read without an index:
/// against the kb_ids of the records read.
pub async fn check_read_kbs(
    watcher: Option<KbWatcher>,
    input: &ArchiveInput,
    selection: &Selection,
) -> anyhow::Result<()> {
    let Some(watcher) = watcher else {
        return Ok(());
    };
    let seen = watcher.await?;
    Ok(selection.check_kbs(&seen, &read_place(input))?)
}

/// A ClickHouse client for the URL, after checking the server answers.
/// A URL without a password takes it from `password_file`, else from
/// `CLICKHOUSE_PASSWORD`.
pub async fn connect_clickhouse(url: &str, password_file: Option<&Path>) -> anyhow::Result<Ch> {
    let mut target = ChTarget::parse(url)?;
    if !target.has_password() {
        let password = fallback_password(
            password_file,
            "--clickhouse-password-file",
            "CLICKHOUSE_PASSWORD",
        )?;
        if let Some(password) = password {
            target = target.with_password(password.0);
        }
    } else if let Some(file) = password_file {
        warn_unused_file(file, "--clickhouse-password-file");
    }
    let ch = Ch::new(target);
    ch.ping().await?;
    Ok(ch)
}

/// `--redis`, `--password-file` and the TLS options as an endpoint.
pub fn redis_endpoint(args: &RedisArgs) -> anyhow::Result<Endpoint> {
    endpoint(&args.redis, args.password_file.as_deref(), &args.tls, "")
}

/// One server's URL, password file and TLS options as an endpoint; the
/// flags are `--{flag_prefix}password-file` and so on. A URL without a
/// password takes it from the file, else from `REDISCLI_AUTH` (as
/// redis-cli does).
pub fn endpoint(
    url: &str,
    password_file: Option<&Path>,
    tls: &TlsArgs,
    flag_prefix: &'static str,
) -> anyhow::Result<Endpoint> {
    let flag = format!("--{flag_prefix}password-file");
    let password = if url_has_password(url) {
        if let Some(file) = password_file {
            warn_unused_file(file, &flag);
        }
        None
    } else {
        fallback_password(password_file, &flag, "REDISCLI_AUTH")?
            .map(|(secret, origin)| Password::new(secret, origin))
    };
    let endpoint = Endpoint {
        url: url.to_string(),
        password,
        tls: TlsFiles {
            ca: tls.tls_ca.clone(),
            cert: tls.tls_cert.clone(),
            key: tls.tls_key.clone(),
            insecure: tls.tls_insecure,
        },
        flag_prefix,
    };
    if endpoint.insecure() && url.starts_with("rediss://") {
        eprintln!(
            "kbdump: warning: the TLS certificate of {} is not verified \
             (--{flag_prefix}tls-insecure): anyone on the network path can pose as the \
             server; for a private CA pass --{flag_prefix}tls-ca FILE instead",
            redact_url(url).trim_end_matches("#insecure")
        );
    }
    Ok(endpoint)
}

/// Connects to the server of `--redis` and its options.
pub async fn connect_redis(args: &RedisArgs) -> anyhow::Result<RedisConn> {
    Ok(RedisConn::open(&redis_endpoint(args)?).await?)
}

/// The restore target and what it accepts (as `Target::connect` learns it
/// for a bare URL).
pub async fn connect_target(endpoint: &Endpoint) -> anyhow::Result<Target> {
    Ok(Target::learn(RedisConn::open(endpoint).await?).await?)
}

/// The checked connection and its multiplexed connection for rebuild's
/// pipelines (both share one socket and the long response timeout that
/// large write pipelines need).
pub async fn write_connection(
    args: &RedisArgs,
) -> anyhow::Result<(RedisConn, crate::net::redis::Link)> {
    let checked = connect_redis(args).await?;
    let conn = checked.multiplexed();
    Ok((checked, conn))
}

fn url_has_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.password().is_some())
}

fn warn_unused_file(file: &Path, flag: &str) {
    eprintln!(
        "kbdump: warning: {flag} {} is not read: the URL carries a password, which comes first",
        file.display()
    );
}

/// The password from `file` (its first line), else from the environment
/// variable `env_var` (when set and not empty), with where it came from.
fn fallback_password(
    file: Option<&Path>,
    flag: &str,
    env_var: &str,
) -> anyhow::Result<Option<(String, String)>> {
    if let Some(file) = file {
        let origin = format!("{flag} {}", file.display());
        return Ok(Some((read_password_file(file, flag)?, origin)));
    }
    match std::env::var(env_var) {
        Ok(value) if !value.is_empty() => Ok(Some((value, env_var.to_string()))),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("the {env_var} environment variable is not valid UTF-8")
        }
    }
}

/// The first line of a password file, without its line ending. Warns when
/// users other than the owner may read the file.
pub fn read_password_file(file: &Path, flag: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {flag} {}", file.display()))?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() {
        anyhow::bail!(
            "{flag} {}: the first line is empty; it must hold the password",
            file.display()
        );
    }
    warn_if_readable_by_others(file, flag);
    Ok(password.to_string())
}

#[cfg(unix)]
fn warn_if_readable_by_others(file: &Path, flag: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        eprintln!(
            "kbdump: warning: {flag} {path} can be read by other users (mode {mode:03o}); \
             chmod 600 {path}",
            path = file.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_file: &Path, _flag: &str) {}

/// The kb_ids `--kb` names in ClickHouse (see [`Ch::resolve_kbs`]), after
/// checking that each names a kb_id of `patterns_data`
/// ([`Selection::check_kbs`]).
pub async fn resolve_clickhouse_kbs(
    ch: &Ch,
    kbs: &[String],
    allow_empty: bool,
) -> anyhow::Result<Vec<String>> {
    let ids = ch.resolve_kbs(&globs(kbs)).await?;
    if kbs.is_empty() {
        return Ok(ids);
    }
    let existing: Vec<Vec<u8>> = ch
        .kb_ids()
        .await?
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let selection = super::options::kb_selection(kbs, allow_empty);
    let place = format!("ClickHouse {} (patterns_data)", ch.target());
    selection.check_kbs(&existing, &place)?;
    // A literal kb_id is taken as given; keep only those that exist.
    Ok(ids
        .into_iter()
        .filter(|id| existing.iter().any(|e| e == id.as_bytes()))
        .collect())
}

/// Runs the Redis sink with its undo archive (see
/// [`crate::flow::restore::restore_with_undo`]), drawing progress (a bar
/// when the source told its `total`).
pub async fn restore_with_undo(
    target: &Target,
    items: mpsc::Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: &Path,
    total: Option<Total>,
    global: &GlobalOpts,
) -> anyhow::Result<(RestoreSummary, Option<UndoSummary>)> {
    let progress = key_progress(global);
    if let Some(total) = total {
        progress.total(total);
    }
    let clock = options.clock.clone();
    Ok(
        flow::restore::restore_with_undo(target, items, options, undo, &clock, progress.as_ref())
            .await?,
    )
}

/// A key no run writes: the probes below name it so that an allowed probe
/// touches nothing.
const PROBE_KEY: &str = "__kbdump_tmp:{probe}:permissions";

/// Checks, before anything is written, that the target's ACL user may run
/// the commands this restore sends for every key: RESTORE (unless
/// `--logical`), DUMP and PTTL for the undo archive in replace mode, EXISTS
/// for a dry run. Without it a user lacking RESTORE gets one NOPERM
/// failure per key instead of one message saying what to grant.
pub async fn check_write_permissions(
    target: &Target,
    options: &RestoreOptions,
) -> anyhow::Result<()> {
    let mut conn = target.conn.clone();
    let mut probes: Vec<(&str, redis::Cmd)> = Vec::new();
    if options.dry_run {
        probes.push(("EXISTS", redis::cmd("EXISTS").arg(PROBE_KEY).clone()));
    } else {
        if !options.force_logical {
            // Not a DUMP payload: refused after the ACL check, writes nothing.
            let restore = redis::cmd("RESTORE").arg(PROBE_KEY).arg(0).arg("").clone();
            probes.push(("RESTORE", restore));
        }
        if options.mode == Mode::Replace {
            probes.push(("DUMP", redis::cmd("DUMP").arg(PROBE_KEY).clone()));
            probes.push(("PTTL", redis::cmd("PTTL").arg(PROBE_KEY).clone()));
        }
    }
    for (what, probe) in &probes {
        conn.require_command(what, probe).await?;
    }
    Ok(())
}

/// Opens an archive, telling the user on stderr when a file is read front
/// to back (cut short, or an index that does not match its blocks).
/// `db` is the database read from a physical backup (`--db`).
pub fn open_archive(
    input: &ArchiveInput,
    db: u64,
) -> anyhow::Result<crate::source::archive::ArchiveSource> {
    let archive = crate::source::archive::ArchiveSource::open_db(input, Some(db))?;
    if let Some(warning) = archive.warning() {
        eprintln!("kbdump: warning: {}: {warning}", input.name());
    }
    Ok(archive)
}

/// Reads the selected records of an archive on this thread (`ls`, `cat`):
/// each record goes to `record`; each damaged part (block, misplaced or
/// repeated key, index) is named on stderr and the read goes on. Every
/// `--kb` must name one of the archive's kb_ids ([`check_archive`]): up
/// front through the index, or, for a stream, against the records read.
/// Returns how many damaged parts there were.
pub fn visit_archive(
    input: &ArchiveInput,
    db: u64,
    selection: &Selection,
    mut record: impl FnMut(crate::records::Record) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let source = open_archive(input, db)?;
    let indexed = check_archive(&source, input, selection)?.is_some();
    let mut seen = std::collections::BTreeSet::new();
    let mut damaged = 0u64;
    source
        .visit(selection, |item| match item {
            SourceItem::Record(r) => {
                if !indexed && !seen.contains(&r.kb_id) {
                    seen.insert(r.kb_id.clone());
                }
                record(r)
            }
            SourceItem::Damaged { what, reason } => {
                damaged += 1;
                eprintln!("kbdump: {}: damaged: {what}: {reason}", input.name());
                Ok(())
            }
            SourceItem::KbDone(_) => Ok(()),
        })
        .map_err(|e: anyhow::Error| super::report::in_archive(e, &input.name()))?;
    if damaged > 0 {
        eprintln!(
            "kbdump: {}: {damaged} damaged part(s) skipped; `kbdump verify` lists every problem",
            input.name()
        );
    }
    if !indexed && !selection.kbs.is_empty() {
        let seen: Vec<Vec<u8>> = seen.into_iter().collect();
        selection.check_kbs(&seen, &read_place(input))?;
    }
    Ok(damaged)
}

/// How many selected keys the target already holds.
pub enum Existing {
    /// Counted key by key (a second read of the source).
    Counted(u64),
    /// The source cannot be read twice: the target's whole key count.
    AtMost(u64),
}

/// The checks of restore and copy before the first write. Warns on stderr
/// about `--rename-kb` onto kb_ids that hold keys (returned, for the
/// report). In replace mode, when the target holds any selected key (or a
/// rename destination holds keys), asks on a terminal and demands `--yes`
/// otherwise. `count` counts the selected keys the target holds; it runs
/// only when the answer matters (replace mode, no `--yes`, a non-empty db).
pub async fn check_before_writing<F, Fut>(
    target: &Target,
    options: &RestoreOptions,
    yes: bool,
    count: F,
) -> anyhow::Result<Vec<KbOccupancy>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Existing>>,
{
    // A target that refuses every write is refused first, whatever it holds.
    if !options.dry_run {
        target.check_writable()?;
    }
    let address = target.conn.address();
    let occupied = rename_targets(&target.conn, &options.renames).await?;
    for kb in &occupied {
        eprintln!(
            "kbdump: warning: --rename-kb writes into kb_id {} on {address}, which already holds {} keys; {}",
            display_bytes(&kb.kb_id),
            kb.existing_keys,
            match options.mode {
                Mode::Replace => "replace mode overwrites those of them that the source also holds",
                _ => "they are kept, and the keys they lack are added among them",
            }
        );
    }
    if options.mode != Mode::Replace || options.dry_run || yes {
        return Ok(occupied);
    }
    let existing = match dbsize(&target.conn).await? {
        0 => Existing::Counted(0),
        _ => count().await?,
    };
    let question = match existing {
        Existing::Counted(0) if occupied.is_empty() => return Ok(occupied),
        Existing::Counted(0) => format!(
            "write in replace mode into kb_ids that already hold keys on {address} (none of the selected keys exists yet)?"
        ),
        Existing::Counted(n) => format!("overwrite {n} existing keys on {address}?"),
        Existing::AtMost(n) => format!(
            "overwrite existing keys on {address}? It holds {n} keys, and this source cannot be read twice to count which of the selected keys are among them"
        ),
    };
    confirm(&question)
        .map(|()| occupied)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was written"))
}

/// Asks `question` on a terminal; without one, refuses, naming `--yes`.
fn confirm(question: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("replace mode: {question} Pass --yes to confirm (there is no terminal to ask on)");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    stdin.read_line(&mut answer)?;
    match answer.trim() {
        "y" | "Y" | "yes" | "Yes" | "YES" => Ok(()),
        _ => bail!("not confirmed"),
    }
}
