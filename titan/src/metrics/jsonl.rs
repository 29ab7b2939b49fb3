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

    /// Opens `path` for a run resumed from its checkpoint at step `step`: the records of later
    /// steps (the stopped run's, which the resumed run logs again) and a torn last line are
    /// moved to `superseded` first (appended there: nothing is lost), so each step is in
    /// `path` once. Returns the sink and how many records moved.
    pub fn resume(path: impl AsRef<Path>, step: u64, superseded: &Path) -> Result<(Self, usize)> {
        let path = path.as_ref();
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let (mut kept, mut moved) = (Vec::new(), Vec::new());
        for line in text.split_inclusive(|&b| b == b'\n') {
            let whole = line.ends_with(b"\n");
            let later = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s > step);
            if whole && !later {
                kept.extend_from_slice(line);
            } else {
                moved.push(line);
            }
        }
        if !moved.is_empty() {
            let mut aside = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(superseded)
                .map_err(|e| Error::io(superseded, e))?;
            for line in &moved {
                aside
                    .write_all(line)
                    .and_then(|()| match line.ends_with(b"\n") {
                        true => Ok(()),
                        false => aside.write_all(b"\n"),
                    })
                    .map_err(|e| Error::io(superseded, e))?;
            }
            aside.sync_all().map_err(|e| Error::io(superseded, e))?;
            // Whole or not at all: the kept records replace the file by a rename.
            let tmp = path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, &kept)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        }
        Ok((Self::open(path, true)?, moved.len()))
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
        })
    }
}

impl MetricsSink for JsonlSink {
    fn record(&mut self, record: &Record) -> Result<()> {
        serde_json::to_writer(&mut self.file, record)?;
        // Flushed per line so a crashed run keeps everything logged before the crash.
        writeln!(self.file)
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
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
        let (mut sink, moved) = JsonlSink::resume(&path, 3, &aside)?;
        assert_eq!(moved, 2);
        sink.record(&Record::Eval(EvalMetrics {
            step: 4,
            val_loss: 1.5,
            val_perplexity: 1.5f64.exp(),
            val_tokens: 10.0,
        }))?;
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let kept = read(&path)?;
        assert!(kept.starts_with(&text[..text.find("{\"step\":4").unwrap_or(0)]));
        assert_eq!(kept.lines().count(), 4, "{kept}");
        assert!(
            kept.lines()
                .last()
                .is_some_and(|l| l.contains("\"val_loss\":1.5"))
        );
        assert_eq!(read(&aside)?, "{\"step\":4,\"loss\":1}\n{\"step\":5,\"lo\n");
        // Nothing later: the file is left as it is, and nothing is set aside.
        let (_, moved) = JsonlSink::resume(&path, 9, &dir.path().join("none.jsonl"))?;
        assert_eq!(moved, 0);
        assert!(!dir.path().join("none.jsonl").exists());
        Ok(())
    }
}
