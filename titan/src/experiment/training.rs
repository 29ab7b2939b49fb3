//! `TrainingConfig`: the run-level settings every experiment has (the `training` section that
//! the standard flags `--steps`, `--batch-size`, `--data`… write to).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::Result;
use crate::trainer::TrainerConfig;

/// Run-level settings: length, batch, data paths, device, cadence of logs and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Seed of data order, initialisation and sampling.
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Training text; unset: the experiment's built-in data.
    pub data: Option<PathBuf>,
    /// Validation text; unset: a held-apart slice of the training source.
    pub val_data: Option<PathBuf>,
    /// Where metrics and outputs go; unset: `runs/<experiment>`.
    pub output_dir: Option<PathBuf>,
    /// Log every this many steps.
    pub log_every: u64,
    /// Evaluate every this many steps (0: at the end only).
    pub eval_every: u64,
    /// Validation batches per evaluation.
    pub eval_batches: usize,
    /// Clip the global gradient norm to this (0: off).
    pub max_grad_norm: f64,
    /// Continuations of `prompt` printed at the end.
    pub samples: usize,
    /// Prompt of the end-of-run samples.
    pub prompt: String,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        // The loop's settings keep one set of defaults, `TrainerConfig`'s.
        let trainer = TrainerConfig::default();
        Self {
            steps: trainer.steps,
            batch_size: 8,
            seq_len: 512,
            seed: 0,
            device: "auto".into(),
            data: None,
            val_data: None,
            output_dir: None,
            log_every: trainer.log_every,
            eval_every: trainer.eval_every,
            eval_batches: trainer.eval_batches,
            max_grad_norm: trainer.max_grad_norm,
            samples: 3,
            prompt: "Once upon a time".into(),
        }
    }
}

impl TrainingConfig {
    /// The Tiny Titan recipe (6,500 steps of 32 × 512) when libtorch sees a GPU; on CPU a run
    /// of 250 steps of 8 × 512 that finishes in minutes.
    pub fn tiny_titan() -> Self {
        let gpu = tch::Cuda::is_available();
        Self {
            steps: if gpu { 6500 } else { 250 },
            batch_size: if gpu { 32 } else { 8 },
            ..Self::default()
        }
    }

    /// The device named by `device`.
    pub fn device(&self) -> Result<Device> {
        crate::device::select(Some(&self.device))
    }

    /// The output directory, `runs/<experiment>` unless set.
    pub fn output_dir(&self, experiment: &str) -> PathBuf {
        self.output_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(experiment))
    }

    /// The loop's settings.
    pub fn trainer(&self) -> TrainerConfig {
        TrainerConfig {
            steps: self.steps,
            log_every: self.log_every,
            eval_every: self.eval_every,
            eval_batches: self.eval_batches,
            max_grad_norm: self.max_grad_norm,
        }
    }
}
