//! Argument groups shared by several commands.

use clap::Args;

use crate::kato::{parse_display_bytes, Category};
use crate::pattern::Glob;
use crate::selection::Selection;

/// Which server to talk to.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port[/db] (rediss:// for TLS).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        hide_default_value = false
    )]
    pub redis: String,
}

/// `--kb`, `--category`, `--match`.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// kb_id or glob (repeatable; default: all). Non-UTF-8 bytes as \xNN.
    #[arg(long = "kb", value_name = "ID|GLOB")]
    pub kbs: Vec<String>,
    /// Category (repeatable): frequency, emotives, metadata, affinity,
    /// symbols, globals, metrics, predictions, other.
    #[arg(long = "category", value_name = "C")]
    pub categories: Vec<Category>,
    /// Key glob, Redis syntax (repeatable; a key matching any is selected).
    #[arg(long = "match", value_name = "GLOB")]
    pub matches: Vec<String>,
}

impl SelectArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            kbs: self
                .kbs
                .iter()
                .map(|k| Glob::new(parse_display_bytes(k)))
                .collect(),
            categories: self.categories.clone(),
            matches: self
                .matches
                .iter()
                .map(|m| Glob::new(parse_display_bytes(m)))
                .collect(),
        }
    }

    pub fn spec(&self) -> crate::format::archive::SelectionSpec {
        crate::format::archive::SelectionSpec {
            kbs: self.kbs.iter().map(|k| parse_display_bytes(k)).collect(),
            categories: self.categories.clone(),
            matches: self
                .matches
                .iter()
                .map(|m| parse_display_bytes(m))
                .collect(),
        }
    }
}

pub use crate::source::archive::ArchiveInput;
