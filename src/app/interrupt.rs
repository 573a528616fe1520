//! SIGINT and SIGTERM. The first asks the running command to stop through
//! a [`Stop`]: export, restore and copy then end cleanly (no temporary
//! file, the undo archive closed and named, the batches in flight
//! finished) and print one line saying what was done; other commands are
//! simply dropped. The exit status is 128 + the signal (130, 143). A
//! second signal ends the process at once.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{signal, SignalKind};

use crate::stop::{Stop, StopHandle};

/// The signals kbdump stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process it killed.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Int => 130,
            Signal::Term => 143,
        }
    }
}

/// The signal listener's findings, shared with the commands.
#[derive(Clone, Debug)]
pub struct Interrupts {
    stop: Stop,
    received: Arc<OnceLock<Signal>>,
}

impl Interrupts {
    /// Starts listening (on the current runtime). Without signal handlers
    /// (which should not happen) the default actions stay: a signal kills.
    pub fn listen() -> Interrupts {
        let (handle, stop) = Stop::new();
        let received = Arc::new(OnceLock::new());
        let streams = signal(SignalKind::interrupt()).and_then(|int| {
            let term = signal(SignalKind::terminate())?;
            Ok((int, term))
        });
        if let Ok((int, term)) = streams {
            tokio::spawn(watch(int, term, handle, received.clone()));
        }
        Interrupts { stop, received }
    }

    /// Listens for nothing (library use, tests).
    pub fn none() -> Interrupts {
        Interrupts {
            stop: Stop::never(),
            received: Arc::new(OnceLock::new()),
        }
    }

    /// What the engines watch.
    pub fn stop(&self) -> Stop {
        self.stop.clone()
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        self.received.get().copied()
    }

    /// Prints `kbdump: interrupted by SIGx: {what}` and returns the exit
    /// status of the signal.
    pub fn report(&self, what: &str) -> ExitCode {
        let signal = self.received().unwrap_or(Signal::Int);
        eprintln!("kbdump: interrupted by {}: {what}", signal.name());
        ExitCode::from(signal.exit_code())
    }
}

impl Default for Interrupts {
    fn default() -> Self {
        Interrupts::none()
    }
}

type Stream = tokio::signal::unix::Signal;

async fn next(int: &mut Stream, term: &mut Stream) -> Signal {
    tokio::select! {
        _ = int.recv() => Signal::Int,
        _ = term.recv() => Signal::Term,
    }
}

async fn watch(
    mut int: Stream,
    mut term: Stream,
    handle: StopHandle,
    received: Arc<OnceLock<Signal>>,
) {
    let first = next(&mut int, &mut term).await;
    let _ = received.set(first);
    handle.request();
    // On a terminal someone is waiting: say why it does not end at once.
    if std::io::stderr().is_terminal() {
        eprintln!(
            "kbdump: {}: stopping after the work in flight; send it again to stop at once",
            first.name()
        );
    }
    let second = next(&mut int, &mut term).await;
    eprintln!("kbdump: {} again: stopping at once", second.name());
    std::process::exit(i32::from(second.exit_code()));
}
