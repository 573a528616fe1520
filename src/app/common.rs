//! Glue several commands share: archive inputs, the ClickHouse and Redis
//! write connections, and the restore engine run with its undo archive.

use std::path::Path;

use anyhow::Context;
use tokio::sync::mpsc;

use super::options::globs;
use super::progress::key_progress;
use super::GlobalOpts;
use crate::cli::{RedisArgs, TlsArgs};
use crate::flow;
use crate::net::clickhouse::{Ch, ChTarget};
use crate::net::redis::{redact_url, Endpoint, Password, RedisConn, TlsFiles};
use crate::progress::Total;
use crate::records::SourceItem;
use crate::sink::archive::UndoSummary;
use crate::sink::redis::{Mode, RestoreOptions, RestoreSummary, Target};
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
) -> anyhow::Result<(RedisConn, redis::aio::MultiplexedConnection)> {
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

/// The kb_ids `--kb` names in ClickHouse (see [`Ch::resolve_kbs`]); warns
/// on stderr when globs were given and none matches.
pub async fn resolve_clickhouse_kbs(ch: &Ch, kbs: &[String]) -> anyhow::Result<Vec<String>> {
    let ids = ch.resolve_kbs(&globs(kbs)).await?;
    if ids.is_empty() && !kbs.is_empty() {
        eprintln!(
            "kbdump: warning: no kb_id in {} matches --kb {}",
            ch.target(),
            kbs.join(" --kb ")
        );
    }
    Ok(ids)
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
/// repeated key, index) is named on stderr and the read goes on. Returns
/// how many damaged parts there were.
pub fn visit_archive(
    input: &ArchiveInput,
    db: u64,
    selection: &crate::selection::Selection,
    mut record: impl FnMut(crate::records::Record) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut damaged = 0u64;
    open_archive(input, db)?
        .visit(selection, |item| match item {
            SourceItem::Record(r) => record(r),
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
    Ok(damaged)
}
