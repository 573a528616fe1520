//! `kbdump copy`: arguments.

// Doc comments here are clap help text shown to users, where a URL shape
// like `redis://[user:password@]host` is meant literally, not as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::Args;

use super::args::{PaceArgs, SelectArgs, TlsArgs, WriteArgs};

const EXAMPLES: &str = "\
Export and restore joined by a bounded channel: constant memory, no file.
Across server versions keys are retagged or re-created with commands where
the target refuses the source's DUMP payloads.

With no selector, every key of the db is copied: kb_ids (with their
stm:events streams), KATO's sessions, global STM and caches, and foreign keys.
A --kb that matches no kb_id is an error before anything is written.

Examples:
  kbdump copy --from redis://old:6379 --to redis://new:6379      # everything
  kbdump copy --from redis://prod:6379 --to redis://127.0.0.1:6380 --kb node0_kato
  kbdump copy --from redis://a:6379 --to redis://b:6379 --kb node0_kato --global
  kbdump copy --from redis://a:6379 --to redis://a:6379 --kb node0_kato --rename-kb node0_kato=node0_copy
  kbdump copy --from redis://old:6379 --to redis://new:6379 --mode merge   # larger counts, unioned metadata (see restore --help)
  kbdump copy --from redis://prod:6379 --to redis://new:6379 --max-keys-per-sec 10k   # spare production
  kbdump copy --from redis://old:6379 --to redis+cluster://10.0.0.1:7000   # onto a Redis Cluster
  kbdump copy --from redis://a:6379 --to redis://b:6379 --mode replace --yes           # in a script

The limits apply to the reads from --from. --mode replace into a target that
already holds keys asks for confirmation on a terminal and needs --yes
otherwise.";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct CopyArgs {
    /// Source Redis URL: redis[s]://[user[:password]@]host:port[/db].
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub from: String,
    /// File whose first line is the source's password. Order: a password in
    /// --from, then this file, then REDISCLI_AUTH (which applies to both
    /// servers).
    #[arg(long, value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Verify the source's certificate against this CA (PEM).
    #[arg(long, value_name = "FILE", conflicts_with = "from_tls_insecure")]
    pub from_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for the source; needs --from-tls-key.
    #[arg(long, value_name = "FILE", requires = "from_tls_key")]
    pub from_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --from-tls-cert.
    #[arg(long, value_name = "FILE", requires = "from_tls_cert")]
    pub from_tls_key: Option<PathBuf>,
    /// Do not verify the source's certificate (test servers only; warns).
    #[arg(long)]
    pub from_tls_insecure: bool,
    /// Target Redis URL: redis[s]://[user[:password]@]host:port[/db].
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub to: String,
    /// File whose first line is the target's password. Order: a password in
    /// --to, then this file, then REDISCLI_AUTH (which applies to both
    /// servers).
    #[arg(long, value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Verify the target's certificate against this CA (PEM).
    #[arg(long, value_name = "FILE", conflicts_with = "to_tls_insecure")]
    pub to_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for the target; needs --to-tls-key.
    #[arg(long, value_name = "FILE", requires = "to_tls_key")]
    pub to_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --to-tls-cert.
    #[arg(long, value_name = "FILE", requires = "to_tls_cert")]
    pub to_tls_key: Option<PathBuf>,
    /// Do not verify the target's certificate (test servers only; warns).
    #[arg(long)]
    pub to_tls_insecure: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Where replace and merge mode save the target keys they change
    /// (default: `copy.undo-<time>.kbd` in the current directory).
    #[arg(long, value_name = "FILE")]
    pub undo: Option<PathBuf>,
    #[command(flatten)]
    pub pace: PaceArgs,
    /// Overwrite existing keys in replace mode without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl CopyArgs {
    /// The source's TLS options, as the one-server commands take them.
    pub fn from_tls(&self) -> TlsArgs {
        TlsArgs {
            tls_ca: self.from_tls_ca.clone(),
            tls_cert: self.from_tls_cert.clone(),
            tls_key: self.from_tls_key.clone(),
            tls_insecure: self.from_tls_insecure,
        }
    }

    /// The target's TLS options.
    pub fn to_tls(&self) -> TlsArgs {
        TlsArgs {
            tls_ca: self.to_tls_ca.clone(),
            tls_cert: self.to_tls_cert.clone(),
            tls_key: self.to_tls_key.clone(),
            tls_insecure: self.to_tls_insecure,
        }
    }
}
