//! `kbdump completions SHELL` and `kbdump man`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::GlobalOpts;
use crate::cli::completions::{write_completions, write_man, write_man_pages};
use crate::cli::{CompletionsArgs, ManArgs};

pub fn completions(args: CompletionsArgs, _global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    write_completions(args.shell, &mut out);
    out.flush().context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.dir else {
        let mut out = std::io::stdout().lock();
        write_man(&mut out).context("writing the man page")?;
        out.flush().context("writing the man page")?;
        return Ok(ExitCode::SUCCESS);
    };
    if !dir.is_dir() {
        anyhow::bail!("{} does not exist; create it first", dir.display());
    }
    let pages = write_man_pages(&dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    if !global.quiet {
        super::report::print_text(&format!(
            "wrote {} man pages into {}\n",
            pages.len(),
            dir.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
