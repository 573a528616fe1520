//! `kbdump completions SHELL` and `kbdump man`: generated from the clap
//! definitions, so they never drift from the real options.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  kbdump completions bash > /etc/bash_completion.d/kbdump
  kbdump completions zsh > \"${fpath[1]}/_kbdump\"
  kbdump completions fish > ~/.config/fish/completions/kbdump.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  kbdump man | man -l -
  sudo kbdump man --dir /usr/local/share/man/man1 && sudo mandb";

/// `kbdump completions`.
#[derive(Debug, Clone, Args)]
#[command(after_help = COMPLETIONS_EXAMPLES)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `kbdump man`.
#[derive(Debug, Clone, Args)]
#[command(after_help = MAN_EXAMPLES)]
pub struct ManArgs {
    /// Write kbdump.1 and one page per subcommand (kbdump-backups-check.1,
    /// ...) into this directory instead of printing kbdump.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the completion script of `shell`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "kbdump", out);
}

/// Writes the kbdump(1) page.
pub fn write_man(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Writes kbdump.1 and a page per subcommand into `dir`; the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("kbdump") && name.ends_with(".1")
        })
        .collect();
    pages.sort();
    Ok(pages)
}
