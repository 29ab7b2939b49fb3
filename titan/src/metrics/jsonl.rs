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
}
