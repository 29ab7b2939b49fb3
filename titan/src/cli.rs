//! The flags every experiment binary accepts (the CLI contract tests and benchmarks rely on).
//! The standard flags are shorthands for `--set training.KEY=VALUE`.

use std::path::PathBuf;

use crate::Result;
use crate::experiment::Overrides;

/// Command-line flags of an experiment binary; unset values keep the experiment's settings.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(about = "Train a titan experiment")]
pub struct TrainArgs {
    /// Optimizer steps to run (`training.steps`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Training data (`training.data`): a `.txt`, `.jsonl` or `.parquet` file, a directory or
    /// a glob of them.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation data, same forms (`training.val_data`); default: every 20th training document.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Where metrics, the tokenizer and outputs go (`training.output_dir`); default `runs/<experiment>`.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Seed of data order, initialisation and sampling (`training.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (`training.device`).
    #[arg(long)]
    pub device: Option<String>,
    /// Sequences per step (`training.batch_size`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Log every this many steps (`training.log_every`).
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Evaluate every this many steps, 0 for the end only (`training.eval_every`).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Number of prompt continuations printed at the end (`training.samples`).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Micro-batches per optimizer step, token-weighted (`training.grad_accum_steps`).
    #[arg(long)]
    pub grad_accum_steps: Option<usize>,
    /// Peak FLOP/s of one device for MFU, e.g. `1e12` on CPU (`training.peak_flops`).
    #[arg(long)]
    pub peak_flops: Option<f64>,
    /// Override any config key: `--set llama.num_hidden_layers=8` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved configuration (TOML) and the construction order, then exit.
    #[arg(long)]
    pub print_config: bool,
}

impl TrainArgs {
    /// The standard flags as `training.*` overrides, followed by the `--set` ones.
    pub fn overrides(&self) -> Result<Overrides> {
        let mut o = Overrides::none();
        // Quoted, so a path or name that looks like a number or `null` stays text.
        let path = |p: &PathBuf| quoted(&p.display().to_string());
        let flags: [(&str, Option<String>); 12] = [
            ("training.steps", self.steps.map(|v| v.to_string())),
            ("training.data", self.data.as_ref().map(path)),
            ("training.val_data", self.val_data.as_ref().map(path)),
            ("training.output_dir", self.output_dir.as_ref().map(path)),
            ("training.seed", self.seed.map(|v| v.to_string())),
            ("training.device", self.device.as_deref().map(quoted)),
            (
                "training.batch_size",
                self.batch_size.map(|v| v.to_string()),
            ),
            ("training.log_every", self.log_every.map(|v| v.to_string())),
            (
                "training.eval_every",
                self.eval_every.map(|v| v.to_string()),
            ),
            ("training.samples", self.samples.map(|v| v.to_string())),
            (
                "training.grad_accum_steps",
                self.grad_accum_steps.map(|v| v.to_string()),
            ),
            (
                "training.peak_flops",
                self.peak_flops.map(|v| v.to_string()),
            ),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                o.push(key, value);
            }
        }
        let extra = Overrides::parse(&self.set)?;
        o.extend(extra);
        Ok(o)
    }
}

fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}
