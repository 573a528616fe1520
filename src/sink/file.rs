//! Writing a file so that it appears under its final name only when it is
//! complete: a temporary name in the same directory, fsync, rename, fsync of
//! the directory. A crash or an error leaves no half file behind the name.
//!
//! Only a regular file (or a name that does not exist yet) is ever
//! replaced this way: renaming over a device node, a FIFO or a directory
//! would destroy it, so [`Output::open`] writes into FIFOs and character
//! devices as streams and refuses the rest. Files are created `0600`: they
//! hold the data in clear.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an output file cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output directory {0} does not exist; create it first")]
    MissingDir(PathBuf),
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// Something that must not be replaced by a file.
    #[error("{path} is {what}")]
    NotAFile { path: PathBuf, what: &'static str },
    // The message says the cause, so it is not also the source.
    #[error("cannot write {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

impl OutputError {
    /// The I/O error underneath, if this is one.
    pub fn io_cause(&self) -> Option<&io::Error> {
        match self {
            OutputError::Io { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// Where an output goes.
pub enum Output {
    /// A file written under a temporary name and renamed into place.
    File(AtomicFile),
    /// A FIFO or a character device, written to directly.
    Stream { file: File, path: PathBuf },
    /// `-` (or `/dev/stdout`).
    Stdout,
}

/// Names that mean this process's stdout, whatever it is connected to.
const STDOUT_NAMES: [&str; 4] = ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];

impl Output {
    /// Opens `name` for an archive: stdout, a stream into an existing FIFO
    /// or character device, or a new file (an existing regular file only
    /// with `force`).
    pub fn open(name: &str, force: bool) -> Result<Output, OutputError> {
        if STDOUT_NAMES.contains(&name) {
            return Ok(Output::Stdout);
        }
        let path = Path::new(name);
        match existing(path)? {
            Existing::Stream => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                Ok(Output::Stream {
                    file,
                    path: path.to_path_buf(),
                })
            }
            _ => AtomicFile::create(path, force).map(Output::File),
        }
    }
}

/// What is already at an output path (symlinks followed).
enum Existing {
    Nothing,
    Regular,
    /// A FIFO or a character device: written to, never replaced.
    Stream,
}

fn existing(path: &Path) -> Result<Existing, OutputError> {
    let kind = match fs::metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(io_err(path)(e)),
    };
    let refuse = |what| {
        Err(OutputError::NotAFile {
            path: path.to_path_buf(),
            what,
        })
    };
    if kind.is_dir() {
        refuse("a directory; name the file to write inside it (DIR/NAME.kbd)")
    } else if kind.is_block_device() {
        refuse("a block device; writing an archive over it would destroy what it holds")
    } else if kind.is_socket() {
        refuse("a socket; write to a file, a FIFO or stdout (-o -) instead")
    } else if kind.is_fifo() || kind.is_char_device() {
        Ok(Existing::Stream)
    } else {
        Ok(Existing::Regular)
    }
}

/// A file being written under a temporary name.
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    /// Renamed into place already (see [`AtomicFile::publish`]).
    published: bool,
}

impl AtomicFile {
    /// A new file at `target`, refusing an existing one unless `force`, and
    /// anything at `target` that is not a regular file. A symlink is
    /// followed: the file it points to is replaced, not the link.
    pub fn create(target: &Path, force: bool) -> Result<AtomicFile, OutputError> {
        let target = match existing(target)? {
            Existing::Nothing => target.to_path_buf(),
            Existing::Regular if !force => return Err(OutputError::Exists(target.to_path_buf())),
            Existing::Regular => resolved(target)?,
            Existing::Stream => {
                return Err(OutputError::NotAFile {
                    path: target.to_path_buf(),
                    what: "a FIFO or a device, not a file that can be replaced",
                })
            }
        };
        let dir = parent_dir(&target);
        if !dir.is_dir() {
            return Err(OutputError::MissingDir(dir));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_err(&temp))?;
        Ok(AtomicFile {
            file: Some(file),
            temp,
            target,
            published: false,
        })
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Syncs the data and renames the file into place.
    pub fn commit(mut self) -> Result<(), OutputError> {
        self.publish()?;
        self.file = None;
        Ok(())
    }

    /// Syncs the data and renames the file into place, keeping it open for
    /// more writes: for a file that must be found under its name while it
    /// grows (the undo archive, valid at every sync point). Once published
    /// the file is no longer removed on drop.
    pub fn publish(&mut self) -> Result<(), OutputError> {
        if self.published {
            return Ok(());
        }
        self.sync()?;
        fs::rename(&self.temp, &self.target).map_err(io_err(&self.target))?;
        self.published = true;
        // The rename is durable only once the directory entry is synced.
        if let Ok(dir) = File::open(parent_dir(&self.target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Where the data is now: the temporary name, or the final one once
    /// published.
    pub fn current_path(&self) -> &Path {
        if self.published {
            &self.target
        } else {
            &self.temp
        }
    }

    /// Forces the data written so far to the disk.
    pub fn sync(&mut self) -> Result<(), OutputError> {
        let path = self.current_path().to_path_buf();
        self.open_file().sync_all().map_err(io_err(&path))
    }

    /// Cuts the file back to `len` bytes and continues writing there.
    pub fn truncate(&mut self, len: u64) -> Result<(), OutputError> {
        let path = self.current_path().to_path_buf();
        let file = self.open_file();
        file.set_len(len)
            .and_then(|_| file.seek(SeekFrom::Start(len)).map(drop))
            .map_err(io_err(&path))
    }

    /// Removes the file, published or not.
    pub fn discard(mut self) -> Result<(), OutputError> {
        self.file = None;
        let path = self.current_path().to_path_buf();
        fs::remove_file(&path).map_err(io_err(&path))
    }

    fn open_file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit or discard")
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |cause| OutputError::Io { path, cause }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.open_file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.open_file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() && !self.published {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The file a symlink points to (the path itself otherwise), so that a
/// rename replaces the file and keeps the link.
fn resolved(path: &Path) -> Result<PathBuf, OutputError> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Ok(path.to_path_buf());
    }
    fs::canonicalize(path).map_err(io_err(path))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn nothing_appears_until_commit_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.kbd");
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"data").unwrap();
        assert!(!target.exists());
        let temp = f.temp_path().to_path_buf();
        drop(f);
        assert!(!temp.exists() && !target.exists());
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"data").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"data");
    }

    #[test]
    fn existing_target_needs_force_and_missing_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.kbd");
        fs::write(&target, b"old").unwrap();
        assert!(matches!(
            AtomicFile::create(&target, false),
            Err(OutputError::Exists(_))
        ));
        assert!(AtomicFile::create(&target, true).is_ok());
        let err = AtomicFile::create(&dir.path().join("no/such/a.kbd"), false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.kbd");
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"data").unwrap();
        // Something that a file cannot be renamed over appears meanwhile.
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(f.commit().is_err());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_symlink_keeps_pointing_at_the_new_file_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.kbd");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("latest.kbd");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = AtomicFile::create(&link, true).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        let mode = fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn directories_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = AtomicFile::create(dir.path(), true).err().unwrap();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }
}
