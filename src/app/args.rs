//! Argument groups shared by several commands.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;
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

/// An archive given as a path or `-` for stdin.
#[derive(Debug, Clone)]
pub enum ArchiveInput {
    Stdin,
    Path(PathBuf),
}

impl ArchiveInput {
    pub fn parse(arg: &str) -> ArchiveInput {
        if arg == "-" {
            ArchiveInput::Stdin
        } else {
            ArchiveInput::Path(PathBuf::from(arg))
        }
    }

    pub fn name(&self) -> String {
        match self {
            ArchiveInput::Stdin => "<stdin>".to_string(),
            ArchiveInput::Path(p) => p.display().to_string(),
        }
    }

    /// Opens the input for a front-to-back read.
    pub fn open_stream(&self) -> anyhow::Result<Box<dyn Read + Send>> {
        Ok(match self {
            ArchiveInput::Stdin => Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            ArchiveInput::Path(p) => Box::new(BufReader::with_capacity(1 << 20, open_file(p)?)),
        })
    }
}

pub fn open_file(path: &PathBuf) -> anyhow::Result<File> {
    if path.is_dir() {
        anyhow::bail!(
            "cannot open archive {}: it is a directory; name a .kbd file",
            path.display()
        );
    }
    File::open(path).with_context(|| format!("cannot open archive {}", path.display()))
}
