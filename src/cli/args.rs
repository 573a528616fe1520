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
    /// TLS). Keep the password out of it (it shows in the process list):
    /// use --password-file or REDISCLI_AUTH.
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

/// `--kb`, `--category`, `--match`.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// kb_id or glob (repeatable; default: all). Non-UTF-8 bytes as \xNN.
    #[arg(long = "kb", value_name = "ID|GLOB", value_parser = kb_value)]
    pub kbs: Vec<String>,
    /// Category (repeatable): frequency, emotives, metadata, affinity,
    /// symbols, globals, metrics, predictions, other.
    #[arg(long = "category", value_name = "C", value_parser = category_value)]
    pub categories: Vec<Category>,
    /// Key glob, Redis syntax (repeatable; a key matching any is selected).
    #[arg(long = "match", value_name = "GLOB", value_parser = match_value)]
    pub matches: Vec<String>,
}

/// `--db`: which database of a physical backup to read.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct DbArg {
    /// Database to read from a physical backup (a dump.rdb, recognised by
    /// its content). A kbdump archive holds one database and ignores it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub db: u64,
}

/// What happens to keys that already exist on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ModeArg {
    /// Never touch an existing key (RESTORE without REPLACE).
    #[default]
    Missing,
    /// Overwrite existing keys.
    Replace,
}

/// Options of restore that copy shares.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// missing: never touch existing keys; replace: overwrite them.
    #[arg(long, value_enum, default_value_t = ModeArg::Missing)]
    pub mode: ModeArg,
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
    non_empty(s, "an empty --kb names no kb_id; give a kb_id or a glob such as 'node*', or leave --kb out to select every kb_id")
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
