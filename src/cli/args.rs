//! Argument groups shared by several commands.

// Doc comments here are clap help text shown to users, where a URL shape
// like `redis://[user:password@]host` is meant literally, not as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::kato::Category;

/// Which server to talk to, and how to log in.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user[:password]@]host:port[/db] (rediss:// for
    /// TLS); a cluster: redis+cluster://host:port[,host:port...] (or
    /// rediss+cluster://). Keep the password out of it (it shows in the
    /// process list): use --password-file or REDISCLI_AUTH.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        hide_default_value = false
    )]
    pub redis: String,
    /// File whose first line is the Redis password (for the URL's user, else
    /// `default`). Order: a password in the URL, then this file, then the
    /// REDISCLI_AUTH environment variable.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS options of one Redis server (rediss:// URLs only).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Verify the server's certificate against this CA (PEM) instead of the
    /// system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers with `tls-auth-clients yes`;
    /// needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Do not verify the server's certificate (self-signed test servers
    /// only: anyone on the path could pose as the server). Prints a warning.
    #[arg(long)]
    pub tls_insecure: bool,
}

/// Which keys: groups (`--kb`, `--global`, `--foreign`), `--category`,
/// `--match`. Without `--kb`, `--global` or `--foreign`, every key of the
/// db is selected.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// kb_id or glob (repeatable). Without --kb, --global or --foreign:
    /// every key of the db (all kb_ids, KATO's global keys, foreign keys).
    /// A --kb that matches no kb_id is an error. Non-UTF-8 bytes as \xNN.
    #[arg(long = "kb", value_name = "ID|GLOB", value_parser = kb_value)]
    pub kbs: Vec<String>,
    /// KATO's global keys (sessions, global short-term memory, caches);
    /// with --kb, in addition to its kb_ids.
    #[arg(long = "global")]
    pub global: bool,
    /// Keys that are not KATO's (other applications' on the same db); with
    /// --kb, in addition to its kb_ids.
    #[arg(long = "foreign")]
    pub foreign: bool,
    /// Category (repeatable): frequency, emotives, metadata, affinity,
    /// symbols, globals, metrics, predictions, stm, sessions, caches,
    /// other, foreign.
    #[arg(long = "category", value_name = "C", value_parser = category_value)]
    pub categories: Vec<Category>,
    /// Key glob, Redis syntax (repeatable; a key matching any is selected).
    #[arg(long = "match", value_name = "GLOB", value_parser = match_value)]
    pub matches: Vec<String>,
    /// Accept a --kb that matches no kb_id (for scripts that mean it)
    /// instead of failing; for `backup`, also write a backup that holds no
    /// key.
    #[arg(long)]
    pub allow_empty: bool,
}

/// `--db`, `--salvage`: how to read a physical backup.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct DbArg {
    /// Database to read from a physical backup (a dump.rdb, an AOF file
    /// or an AOF directory, recognised by their content). A kbdump archive
    /// holds one database and ignores it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub db: u64,
    /// An AOF damaged in the middle: use the keys as they were just before
    /// the damage (without it, nothing is read: the keys' state after the
    /// damage is unknown). A cut last command needs no flag: it is
    /// reported and every command before it used.
    #[arg(long)]
    pub salvage: bool,
}

/// What happens to keys that already exist on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ModeArg {
    /// Never touch an existing key (RESTORE without REPLACE).
    #[default]
    Missing,
    /// Overwrite existing keys.
    Replace,
    /// Put archived and live values together, per category policy.
    Merge,
}

/// How `--mode merge` puts a category's archived values together with the
/// live ones (`--policy CATEGORY=POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Integer strings: the larger of live and archived.
    Max,
    /// Hashes: archived fields the live hash lacks; sets: archived members;
    /// KATO metadata (JSON object of lists): the sorted union per field.
    Union,
    /// The live value stays.
    Keep,
    /// The archived value overwrites the live one.
    Replace,
}

/// Options of restore that copy shares.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// missing: never touch existing keys; replace: overwrite them; merge:
    /// put archived and live values together per category policy (see
    /// --policy), restoring what is missing.
    #[arg(long, value_enum, default_value_t = ModeArg::Missing)]
    pub mode: ModeArg,
    /// With --mode merge: how one category merges (repeatable). Policies:
    /// max (integer strings: the larger), union (hashes: add missing
    /// fields, live fields win; sets: add members; KATO metadata: sorted
    /// union per field, written as KATO writes it), keep (live value
    /// stays), replace (archived value overwrites). Defaults:
    /// frequency=max, affinity=union, metadata=union, every other
    /// category keep. A value that does not fit its policy is a conflict:
    /// the live value stays and the key is listed.
    #[arg(long = "policy", value_name = "CATEGORY=POLICY", value_parser = parse_policy)]
    pub policies: Vec<(Category, PolicyArg)>,
    /// Write kb_id FROM's keys under kb_id TO (repeatable).
    #[arg(long = "rename-kb", value_name = "FROM=TO", value_parser = parse_rename)]
    pub renames: Vec<(String, String)>,
    /// Write nothing; report exactly what a real run would do.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-create every key with plain commands instead of RESTORE.
    #[arg(long)]
    pub logical: bool,
    /// Restore even when the target's maxmemory headroom looks too small.
    #[arg(long)]
    pub force: bool,
}

/// A `--kb` value: a kb_id or glob, never empty (an empty kb_id would
/// silently select nothing, or everything a script did not mean).
pub fn kb_value(s: &str) -> Result<String, String> {
    non_empty(s, "an empty --kb names no kb_id; give a kb_id or a glob such as 'node*', or leave --kb out to select every key of the db")
}

fn match_value(s: &str) -> Result<String, String> {
    non_empty(s, "an empty --match matches no key; give a key glob such as '*:emotives:*', or leave --match out")
}

fn category_value(s: &str) -> Result<Category, String> {
    if s.is_empty() {
        return Err(format!(
            "an empty --category selects nothing; give one of: {}, or leave --category out",
            Category::ALL.map(Category::name).join(", ")
        ));
    }
    s.parse()
        .map_err(|e: crate::kato::UnknownCategory| e.to_string())
}

fn non_empty(s: &str, why: &str) -> Result<String, String> {
    if s.is_empty() {
        Err(why.to_string())
    } else {
        Ok(s.to_string())
    }
}

fn parse_policy(s: &str) -> Result<(Category, PolicyArg), String> {
    let Some((category, policy)) = s.split_once('=') else {
        return Err(format!(
            "expected CATEGORY=POLICY (e.g. frequency=max), got {s:?}"
        ));
    };
    let category: Category = category.parse().map_err(|e| format!("{e}"))?;
    let policy = PolicyArg::from_str(policy, false).map_err(|_| {
        format!("unknown policy {policy:?}; known policies: max, union, keep, replace")
    })?;
    Ok((category, policy))
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(format!("expected FROM=TO, got {s:?}")),
    }
}

/// Which ClickHouse to talk to.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL: http[s]://[user[:password]@]host:port/?database=NAME
    /// (database `kato` when not given). https:// verifies the server against
    /// the system's roots, or the CA bundle that SSL_CERT_FILE names.
    #[arg(
        long,
        env = "CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        hide_env_values = true
    )]
    pub clickhouse: String,
    /// File whose first line is the ClickHouse password. Order: a password
    /// in the URL, then this file, then the CLICKHOUSE_PASSWORD environment
    /// variable.
    #[arg(long, value_name = "FILE")]
    pub clickhouse_password_file: Option<PathBuf>,
}

/// `--encrypt-to`, `--recipients-file`: encrypt the archive with age.
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptArgs {
    /// Encrypt the archive to this age recipient (an X25519 public key,
    /// `age1…`, as `age-keygen` prints it). Repeatable: any one of the
    /// matching identities opens the archive.
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt to every recipient in FILE (one `age1…` per line, `#`
    /// comments). Repeatable.
    #[arg(long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
}

/// How gently a live server is read: `export`, `backup`, `copy` and `mirror`.
#[derive(Debug, Clone, Args)]
pub struct PaceArgs {
    /// Read at most N keys per second from the server (DUMP pipelines are
    /// cut to a tenth of a second's worth). Suffixes: 10k, 5M.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub max_keys_per_sec: Option<u64>,
    /// Read at most N bytes of DUMP payload per second from the server.
    /// Suffixes: 10k, 5M (powers of 1000), 64KiB, 1MiB (powers of 1024).
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub max_bytes_per_sec: Option<u64>,
    /// How long a read waits, retrying with backoff, for a server that
    /// answers LOADING (loading its data after a restart) or BUSY (a script
    /// is running) before it gives up.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub busy_timeout: u64,
}

/// A rate such as `1000`, `10k`, `5M`, `1.5M` or `1MiB`: decimal suffixes
/// k, M, G (with an optional B), binary ones Ki, Mi, Gi (optional B).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a number such as 1000, 10k or 1MiB, got {s:?}"))?;
    let unit: u64 = match suffix.trim().strip_suffix('B').unwrap_or(suffix.trim()) {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" | "KI" => 1 << 10,
        "Mi" | "MI" => 1 << 20,
        "Gi" | "GI" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown suffix {suffix:?} in {s:?}; use k, M, G (powers of 1000) or KiB, MiB, GiB (powers of 1024)"
            ))
        }
    };
    let rate = (value * unit as f64).round();
    if rate < 1.0 || !rate.is_finite() {
        return Err(format!(
            "{s:?} would never read anything; leave the flag out for no limit"
        ));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_a_category_and_a_policy() {
        assert_eq!(
            parse_policy("emotives=replace"),
            Ok((Category::Emotives, PolicyArg::Replace))
        );
        assert_eq!(
            parse_policy("frequency=max"),
            Ok((Category::Frequency, PolicyArg::Max))
        );
        let err = parse_policy("nosuch=max").unwrap_err();
        assert!(
            err.contains("\"nosuch\"") && err.contains("frequency, emotives"),
            "{err}"
        );
        let err = parse_policy("metadata=Union").unwrap_err();
        assert!(err.contains("max, union, keep, replace"), "{err}");
        let err = parse_policy("metadata").unwrap_err();
        assert!(err.contains("CATEGORY=POLICY"), "{err}");
    }

    #[test]
    fn rates_take_decimal_and_binary_suffixes() {
        let cases = [
            ("1000", 1000),
            ("10k", 10_000),
            ("10K", 10_000),
            ("5M", 5_000_000),
            ("1.5M", 1_500_000),
            ("2G", 2_000_000_000),
            ("64KiB", 65_536),
            ("1MiB", 1_048_576),
            ("1Mi", 1_048_576),
            ("200kB", 200_000),
            ("512B", 512),
        ];
        for (text, value) in cases {
            assert_eq!(parse_rate(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn bad_rates_say_what_is_accepted() {
        assert!(parse_rate("10x").unwrap_err().contains("MiB"));
        assert!(parse_rate("fast")
            .unwrap_err()
            .contains("expected a number"));
        assert!(parse_rate("0").unwrap_err().contains("no limit"));
        assert!(parse_rate("").is_err());
        assert!(parse_rate("-5").is_err());
    }
}
