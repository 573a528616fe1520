//! Writing a file so that it appears under its final name only when it is
//! complete: a temporary name in the same directory, fsync, rename, fsync of
//! the directory. A crash or an error leaves no half file behind the name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why an output file cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output directory {0} does not exist; create it first")]
    MissingDir(PathBuf),
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
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
    pub fn create(target: &Path, force: bool) -> Result<AtomicFile, OutputError> {
        let dir = parent_dir(target);
        if !dir.is_dir() {
            return Err(OutputError::MissingDir(dir));
        }
        if target.exists() && !force {
            return Err(OutputError::Exists(target.to_path_buf()));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|source| OutputError::Io {
                path: temp.clone(),
                source,
            })?;
        Ok(AtomicFile {
            file: Some(file),
            temp,
            target: target.to_path_buf(),
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
    move |source| OutputError::Io { path, source }
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

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
