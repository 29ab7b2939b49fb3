//! What the trainer reports, in torchtitan's names, and where it goes (`MetricsSink`):
//! `metrics.jsonl` for tools and a console line for people.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{Error, Result};

/// One logged training step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// 1-based step number.
    pub step: u64,
    /// Training loss of this step.
    pub loss: f64,
    /// Learning rate used by this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens per second per device since the previous log line.
    pub tps: f64,
    /// Mean wall-clock seconds per step since the previous log line.
    pub step_time_s: f64,
    /// Mean seconds per step spent waiting for the dataloader.
    pub data_wait_s: f64,
    /// Completed passes over the training data.
    pub epoch: u64,
}

/// One evaluation on the validation data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalMetrics {
    /// Training step after which it ran.
    pub step: u64,
    /// Mean loss per validation token.
    pub val_loss: f64,
    /// `exp(val_loss)`.
    pub val_perplexity: f64,
    /// Tokens evaluated.
    pub val_tokens: f64,
}

/// A metrics record of either kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// A training step.
    Step(StepMetrics),
    /// An evaluation.
    Eval(EvalMetrics),
}

/// Somewhere metrics go.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a metrics sink",
    note = "a metrics sink implements `titan::metrics::MetricsSink`"
)]
pub trait MetricsSink {
    /// Records one step or evaluation.
    fn record(&mut self, record: &Record) -> Result<()>;
}

/// Appends one JSON object per record to a file (`DIR/metrics.jsonl`).
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl JsonlSink {
    /// Creates (truncates) `path`, creating its directory.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
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

/// Formats a record as one console line.
pub fn console_line(record: &Record) -> String {
    match record {
        Record::Step(m) => format!(
            "step {:>6}  loss {:.4}  lr {:.2e}  grad_norm {:.3}  tps {:>8.0}  step {:.3}s  data {:.1}ms  epoch {}",
            m.step,
            m.loss,
            m.lr,
            m.grad_norm,
            m.tps,
            m.step_time_s,
            m.data_wait_s * 1e3,
            m.epoch
        ),
        Record::Eval(m) => format!(
            "eval after step {:>6}  val_loss {:.4}  val_ppl {:.2}  ({} tokens)",
            m.step, m.val_loss, m.val_perplexity, m.val_tokens
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            step_time_s: 0.5,
            data_wait_s: 0.0,
            epoch: 0,
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
