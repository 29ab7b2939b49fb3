//! What the trainer reports, in torchtitan's names and formulas, and where it goes
//! (`MetricsSink`): `metrics.jsonl` and TensorBoard event files for tools, a console line and a
//! progress bar for people.

mod flops;
mod jsonl;
mod tensorboard;

pub use flops::{PEAK_FLOPS, max_rss_gib, palm_flops_per_token, peak_flops};
pub use jsonl::JsonlSink;
pub use tensorboard::{TensorBoardSink, read_events, read_purge_steps};

use serde::Serialize;

use crate::Result;

/// One logged training step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// 1-based step number.
    pub step: u64,
    /// Training loss of this step.
    #[serde(serialize_with = "number_or_name")]
    pub loss: f64,
    /// Learning rate used by this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    #[serde(serialize_with = "number_or_name")]
    pub grad_norm: f64,
    /// Tokens per second per device since the previous log line (every data-parallel rank's
    /// tokens over the ranks, as torchtitan's `tps`).
    pub tps: f64,
    /// Model TFLOP/s per device (PaLM's count: 6·(N − N_embedding) + 12·L·H·D·T per token).
    pub tflops: f64,
    /// Model FLOPs utilisation in percent of the device's peak; `None` when the peak is unknown
    /// (CPU without `--peak-flops`).
    pub mfu: Option<f64>,
    /// Peak resident memory of the process, GiB (host memory).
    pub max_rss_gib: f64,
    /// On CUDA, the most device memory libtorch's caching allocator reserved since the
    /// previous log line, GiB (torchtitan's `max_reserved`); `None` on CPU.
    pub max_reserved_gib: Option<f64>,
    /// On CUDA, the most device memory in live tensors since the previous log line, GiB (a
    /// replayed CUDA graph's own pool is not in it; `max_reserved_gib` counts it).
    pub max_allocated_gib: Option<f64>,
    /// Mean wall-clock seconds per step since the previous log line.
    pub step_time_s: f64,
    /// Mean seconds per step spent waiting for the dataloader.
    pub data_wait_s: f64,
    /// Completed passes over the training data.
    pub epoch: u64,
    /// Steps so far whose loss or gradient norm was NaN or infinite, each skipped by the
    /// optimizer (`training.max_skipped_steps` in a row stop the run).
    pub skipped_steps: u64,
}

/// One evaluation on the validation data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalMetrics {
    /// Training step after which it ran.
    pub step: u64,
    /// Mean loss per validation token.
    #[serde(serialize_with = "number_or_name")]
    pub val_loss: f64,
    /// `exp(val_loss)`.
    #[serde(serialize_with = "number_or_name")]
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
    label = "the `metrics` role takes a metrics sink",
    note = "implement `titan::metrics::MetricsSink` for `{Self}` (`record`, which receives every step and evaluation record on rank 0), or give the field another name: a field named `metrics` is the experiment's metrics sink"
)]
pub trait MetricsSink {
    /// Records one step or evaluation.
    fn record(&mut self, record: &Record) -> Result<()>;

    /// The run resumed from its checkpoint at `step`, now restored: records of later steps
    /// will come again (a file sink sets the stopped run's aside). Nothing by default.
    fn resumed(&mut self, step: u64) -> Result<()> {
        let _ = step;
        Ok(())
    }
}

/// A boxed sink, e.g. `Box<dyn MetricsSink>` chosen at run time.
impl<S: MetricsSink + ?Sized> MetricsSink for Box<S> {
    fn record(&mut self, record: &Record) -> Result<()> {
        (**self).record(record)
    }

    fn resumed(&mut self, step: u64) -> Result<()> {
        (**self).resumed(step)
    }
}

/// A sink that may be absent: `None` records nothing (a sink built only on rank 0, where
/// [`crate::dist::writes_outputs`] is true, or only when an API key is set).
impl<S: MetricsSink> MetricsSink for Option<S> {
    fn record(&mut self, record: &Record) -> Result<()> {
        match self {
            Some(sink) => sink.record(record),
            None => Ok(()),
        }
    }

    fn resumed(&mut self, step: u64) -> Result<()> {
        match self {
            Some(sink) => sink.resumed(step),
            None => Ok(()),
        }
    }
}

/// Formats a record as one console line.
pub fn console_line(record: &Record) -> String {
    match record {
        Record::Step(m) => format!(
            "step {:>6}  loss {:.4}  lr {:.2e}  grad_norm {:.3}  memory {:.2}GiB  tps {:>8.0}  tflops {:.2}  mfu {}  step {:.3}s  data {:.1}ms  epoch {}",
            m.step,
            m.loss,
            m.lr,
            m.grad_norm,
            m.max_reserved_gib.unwrap_or(m.max_rss_gib),
            m.tps,
            m.tflops,
            m.mfu
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}%")),
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

/// A float as JSON: a number when finite, else its name (`"NaN"`, `"inf"`, `"-inf"`): JSON
/// has no NaN, and serde would write `null`, which reads as "not measured".
fn number_or_name<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else {
        serializer.serialize_str(&value.to_string())
    }
}
