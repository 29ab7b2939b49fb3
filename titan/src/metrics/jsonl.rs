//! `metrics.jsonl`: one JSON object per step or evaluation.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{MetricsSink, Record};
use crate::{Error, Result};

/// Appends one JSON object per record to a file (`DIR/metrics.jsonl`).
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    /// Where the records a resumed run logs again go first ([`JsonlSink::resuming`]).
    superseded: Option<PathBuf>,
}

impl JsonlSink {
    /// Creates (truncates) `path`, creating its directory.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path.as_ref(), false)
    }

    /// Opens `path` to add to what it holds (a resumed run), creating it when absent.
    pub fn append(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path.as_ref(), true)
    }

    /// [`JsonlSink::append`] for a run that resumes from a checkpoint: once the trainer has
    /// restored it ([`MetricsSink::resumed`]), the records of later steps (the stopped run's,
    /// which the resumed run logs again) and a torn last line move to `superseded` (appended
    /// there: nothing is lost), so each step is in `path` once. Nothing moves before the
    /// checkpoint is restored: a resume that is refused leaves the file as it was.
    pub fn resuming(path: impl AsRef<Path>, superseded: impl AsRef<Path>) -> Result<Self> {
        let mut sink = Self::open(path.as_ref(), true)?;
        sink.superseded = Some(superseded.as_ref().to_path_buf());
        Ok(sink)
    }

    fn open(path: &Path, append: bool) -> Result<Self> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            path,
            file: std::io::BufWriter::new(file),
            superseded: None,
        })
    }
}

/// Moves the records of `path` after step `step`, and a torn last line, to the end of
/// `superseded`, and ends a whole last record with its newline; rewrites `path` whole (a
/// temporary file, synced, renamed) when anything changed. Returns how many lines moved.
fn supersede(path: &Path, step: u64, superseded: &Path) -> Result<usize> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(path, e)),
    };
    let (mut kept, mut moved) = (Vec::new(), Vec::new());
    for line in text.split_inclusive(|&b| b == b'\n') {
        let record = serde_json::from_slice::<serde_json::Value>(line).ok();
        let later = record
            .as_ref()
            .and_then(|v| v.get("step")?.as_u64())
            .is_some_and(|s| s > step);
        // A last line without its newline is whole when it parses (cut between the record
        // and its newline), torn otherwise.
        if record.is_some() && !later {
            kept.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                kept.push(b'\n');
            }
        } else {
            moved.push(line);
        }
    }
    if kept == text {
        return Ok(0);
    }
    if !moved.is_empty() {
        append_lines(superseded, &moved)?;
    }
    // Whole or not at all: the kept records replace the file by a rename.
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, &kept)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(moved.len())
}

/// Appends `lines` to `superseded`, each ended with its newline, and syncs it.
fn append_lines(superseded: &Path, lines: &[&[u8]]) -> Result<()> {
    let mut aside = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(superseded)
        .map_err(|e| Error::io(superseded, e))?;
    for line in lines {
        aside
            .write_all(line)
            .and_then(|()| match line.ends_with(b"\n") {
                true => Ok(()),
                false => aside.write_all(b"\n"),
            })
            .map_err(|e| Error::io(superseded, e))?;
    }
    aside.sync_all().map_err(|e| Error::io(superseded, e))
}

impl MetricsSink for JsonlSink {
    fn record(&mut self, record: &Record) -> Result<()> {
        serde_json::to_writer(&mut self.file, record)?;
        // Flushed per line so a crashed run keeps everything logged before the crash.
        writeln!(self.file)
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    fn resumed(&mut self, step: u64) -> Result<()> {
        let Some(superseded) = self.superseded.take() else {
            return Ok(());
        };
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        let moved = supersede(&self.path, step, &superseded)?;
        // The file may have been replaced: write to the one at the path now.
        *self = Self::open(&self.path, true)?;
        if moved > 0 {
            tracing::info!(
                "note: {moved} lines of {} after step {step} (logged before the run stopped; it \
                 logs those steps again) are moved to {}",
                self.path.display(),
                superseded.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EvalMetrics, StepMetrics};

    #[test]
    fn jsonl_has_one_object_per_line_with_the_contract_keys() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("run/metrics.jsonl");
        let mut sink = JsonlSink::create(&path)?;
        sink.record(&Record::Step(StepMetrics {
            step: 1,
            loss: 7.5,
            lr: 1e-3,
            grad_norm: 2.0,
            tps: 100.0,
            tflops: 0.5,
            mfu: None,
            max_rss_gib: 1.0,
            max_reserved_gib: None,
            max_allocated_gib: None,
            step_time_s: 0.5,
            data_wait_s: 0.0,
            epoch: 0,
            skipped_steps: 0,
        }))?;
        sink.record(&Record::Eval(EvalMetrics {
            step: 1,
            val_loss: 7.0,
            val_perplexity: 7f64.exp(),
            val_tokens: 10.0,
        }))?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<std::result::Result<_, _>>()?;
        for key in ["step", "loss", "lr", "grad_norm", "tps"] {
            assert!(lines[0].get(key).is_some(), "{key}");
        }
        assert_eq!(lines[1]["val_loss"], 7.0);
        Ok(())
    }

    #[test]
    fn a_resume_moves_the_later_steps_and_a_torn_line_aside() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("metrics.jsonl");
        let aside = dir.path().join("metrics.superseded.jsonl");
        let text = "{\"step\":2,\"loss\":3}\n{\"step\":3,\"loss\":2}\n{\"step\":3,\"val_loss\":2}\n\
                    {\"step\":4,\"loss\":1}\n{\"step\":5,\"lo";
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let mut sink = JsonlSink::resuming(&path, &aside)?;
        // Nothing moves until the checkpoint is restored.
        assert_eq!(read(&path)?, text);
        sink.resumed(3)?;
        sink.record(&Record::Eval(EvalMetrics {
            step: 4,
            val_loss: 1.5,
            val_perplexity: 1.5f64.exp(),
            val_tokens: 10.0,
        }))?;
        let kept = read(&path)?;
        assert!(kept.starts_with(&text[..text.find("{\"step\":4").unwrap_or(0)]));
        assert_eq!(kept.lines().count(), 4, "{kept}");
        assert!(
            kept.lines()
                .last()
                .is_some_and(|l| l.contains("\"val_loss\":1.5"))
        );
        assert_eq!(read(&aside)?, "{\"step\":4,\"loss\":1}\n{\"step\":5,\"lo\n");
        // A whole last record without its newline stays; nothing later: nothing set aside.
        std::fs::write(&path, "{\"step\":2,\"loss\":3}").map_err(|e| Error::io(&path, e))?;
        let none = dir.path().join("none.jsonl");
        let mut sink = JsonlSink::resuming(&path, &none)?;
        sink.resumed(9)?;
        sink.record(&Record::Eval(EvalMetrics {
            step: 10,
            val_loss: 1.5,
            val_perplexity: 1.5f64.exp(),
            val_tokens: 10.0,
        }))?;
        let two = read(&path)?;
        assert!(
            two.starts_with("{\"step\":2,\"loss\":3}\n{\"step\":10"),
            "{two}"
        );
        assert_eq!(supersede(&path, 10, &none)?, 0);
        assert!(!none.exists());
        Ok(())
    }
}
