//! The lock of a backup directory: `DIR/kbdump.lock`, held with `flock`
//! for as long as a command that changes the directory runs (`backup`,
//! `backups prune`, `verify`, `test`), and naming its holder inside.
//!
//! The kernel drops a `flock` when its process dies, so a crashed run
//! never blocks the next one; the holder it names then is "stale" and is
//! taken over with a message. A lock that is free by `flock` but names a
//! process that is still running (same host, same process start time, so
//! a reused PID is not mistaken for it) is treated as held too: the
//! belt to the braces. The file is emptied on release, never deleted:
//! deleting it would let two later runs lock two different files.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock file's name inside the directory.
pub const LOCK_NAME: &str = "kbdump.lock";

/// Who holds (or held) a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The process's start time in clock ticks since boot
    /// (`/proc/PID/stat`, field 22), telling a reused PID apart.
    pub start_ticks: Option<u64>,
    pub host: String,
    pub command: String,
    pub since_ms: i64,
}

impl Holder {
    /// This process, running `command` since `now_ms`.
    pub fn me(command: &str, now_ms: i64) -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start_ticks: start_ticks(pid),
            host: hostname(),
            command: command.to_string(),
            since_ms: now_ms,
        }
    }

    /// Whether the process still runs (only answerable on this host; a
    /// holder on another host counts as alive).
    pub fn is_alive(&self) -> bool {
        if self.host != hostname() {
            return true;
        }
        match (start_ticks(self.pid), self.start_ticks) {
            (None, _) => false,
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
        }
    }

    fn describe(&self) -> String {
        format!(
            "kbdump {} (pid {} on {}, since unix ms {})",
            self.command, self.pid, self.host, self.since_ms
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another run holds the lock {}{}: wait for it to finish (two runs in one backup directory would interfere)",
        path.display(),
        holder.as_ref().map_or(String::new(), |h| format!(": {}", h.describe()))
    )]
    Held {
        path: PathBuf,
        holder: Option<Holder>,
    },
    #[error("cannot use the lock file {}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
    /// The stale holder this lock was taken over from, if any.
    pub took_over: Option<Holder>,
}

impl DirLock {
    /// Takes the lock of `dir` for `command`, or says who holds it.
    pub fn acquire(dir: &Path, command: &str, now_ms: i64) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_NAME);
        let io = |source| LockError::Io {
            path: path.clone(),
            cause: source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let previous = read_holder(&mut file);
        if let Some(holder) = previous
            .as_ref()
            .filter(|h| h.pid != std::process::id() && h.is_alive())
        {
            return Err(LockError::Held {
                path,
                holder: Some(holder.clone()),
            });
        }
        let me = Holder::me(command, now_ms);
        let text = serde_json::to_string(&me).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(format!("{text}\n").as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok(DirLock {
            file,
            path,
            took_over: previous,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Emptied, then unlocked (closing the file would unlock it too).
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Field 22 of `/proc/PID/stat`; `None` when the process does not exist.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_in_one_process_is_refused_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "backup", 1).unwrap();
        assert!(first.took_over.is_none());
        let err = DirLock::acquire(dir.path(), "prune", 2).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("kbdump backup (pid"), "{text}");
        drop(first);
        let again = DirLock::acquire(dir.path(), "prune", 3).unwrap();
        assert!(again.took_over.is_none(), "a released lock is not stale");
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Holder::me("backup", 0);
        assert!(me.is_alive());
        let reused = Holder {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_alive());
        let elsewhere = Holder {
            host: "another-host".into(),
            pid: u32::MAX,
            ..me
        };
        assert!(elsewhere.is_alive());
    }
}
