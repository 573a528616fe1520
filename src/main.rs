use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kbdump::app;
use kbdump::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kbdump: error: cannot start the async runtime: {e}");
            return ExitCode::from(app::EXIT_ERROR);
        }
    };
    let result = runtime.block_on(app::run(cli));
    // A writer thread blocked on a stream whose reader stalled (an
    // interrupted export into a pipe) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(err) if app::report::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kbdump: error: {err:#}");
            ExitCode::from(app::EXIT_ERROR)
        }
    }
}
