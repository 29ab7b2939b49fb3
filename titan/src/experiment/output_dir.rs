//! The rules of a run's output directory that are not checkpoints': one titan process at a
//! time (a lock), and a new run never overwrites what an earlier one logged (its metrics and
//! TensorBoard files are moved aside, numbered, not truncated).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file's name inside an output directory.
const LOCK: &str = crate::checkpoint::OUTPUT_LOCK;

/// Holds an output directory for this process until dropped; a second process (or a second
/// run in this one) pointed at the same directory gets an error instead of interleaved files.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Locks `dir` (created when absent), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::config(
                "training.output_dir",
                dir.display(),
                format!("cannot be created: {e}"),
            )
        })?;
        let path = dir.join(LOCK);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another titan process".to_string()
                } else {
                    format!("titan process {holder}")
                };
                return Err(Error::config(
                    "training.output_dir",
                    dir.display(),
                    format!("is in use by {who}; wait for it to end, or use another --output-dir"),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Who holds it, for the other process's message.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self { _file: file })
    }
}

/// Moves `path` (a file or directory an earlier run wrote) aside to the first free numbered
/// name beside it (`metrics.jsonl` → `metrics.1.jsonl`, `tb` → `tb.1`); returns where, or
/// `None` when there was nothing there.
pub fn keep_aside(path: &Path) -> Result<Option<PathBuf>> {
    if !path.exists() {
        return Ok(None);
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("old");
    let ext = path.extension().and_then(|s| s.to_str());
    for n in 1.. {
        let name = match ext {
            Some(ext) => format!("{stem}.{n}.{ext}"),
            None => format!("{stem}.{n}"),
        };
        let aside = path.with_file_name(name);
        if !aside.exists() {
            std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
            return Ok(Some(aside));
        }
    }
    unreachable!("some numbered name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_an_error_naming_the_holder() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let held = OutputLock::acquire(dir.path())?;
        let err = OutputLock::acquire(dir.path()).expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains(&std::process::id().to_string()) && text.contains("--output-dir"),
            "{text}"
        );
        drop(held);
        OutputLock::acquire(dir.path())?;
        Ok(())
    }

    #[test]
    fn earlier_files_are_moved_aside_numbered() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let metrics = dir.path().join("metrics.jsonl");
        assert_eq!(keep_aside(&metrics)?, None);
        for run in ["first", "second"] {
            std::fs::write(&metrics, run).map_err(|e| Error::io(&metrics, e))?;
            keep_aside(&metrics)?;
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).ok();
        assert_eq!(read("metrics.1.jsonl").as_deref(), Some("first"));
        assert_eq!(read("metrics.2.jsonl").as_deref(), Some("second"));
        let tb = dir.path().join("tb");
        std::fs::create_dir(&tb).map_err(|e| Error::io(&tb, e))?;
        assert_eq!(keep_aside(&tb)?, Some(dir.path().join("tb.1")));
        Ok(())
    }
}
