//! The flags every experiment binary accepts (the CLI contract tests and benchmarks rely on).

use std::path::PathBuf;

/// Command-line flags of an experiment binary; unset values take the experiment's defaults.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(about = "Train a titan experiment")]
pub struct TrainArgs {
    /// Optimizer steps to run.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Training text (documents separated by `<|endoftext|>` lines); default: built-in stories.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation text; default: a held-apart slice of the training source.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Where metrics, the tokenizer and outputs go; default: `runs/<experiment>`.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Seed of data order, initialisation and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
    #[arg(long)]
    pub device: Option<String>,
    /// Sequences per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Log every this many steps.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Evaluate every this many steps (0: at the end only).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Number of "Once upon a time" continuations printed at the end.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
}

impl TrainArgs {
    /// The output directory, `runs/<experiment>` unless given.
    pub fn output_dir_or(&self, experiment: &str) -> PathBuf {
        self.output_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(experiment))
    }
}
