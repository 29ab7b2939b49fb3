//! `TrainingConfig`: the run-level settings every experiment has (the `training` section that
//! the standard flags `--steps`, `--batch-size`, `--data`… write to).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::Result;
use crate::trainer::TrainerConfig;

/// Precision of the forward and backward passes; parameters stay f32 (master weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// bf16 on CUDA, f32 on CPU.
    Auto,
    /// bf16 compute with f32 master weights.
    Bf16,
    /// f32 throughout.
    Fp32,
}

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
    /// `auto` (bf16 on CUDA, f32 on CPU), `bf16` or `fp32`.
    pub precision: Precision,
    /// Recompute each transformer block in backward instead of keeping its activations.
    pub activation_checkpointing: bool,
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
    /// Micro-batches of `batch_size` per optimizer step, gradients weighted by token count.
    pub grad_accum_steps: usize,
    /// Peak FLOP/s of one device, for MFU; unset: known GPUs' bf16 peak, none on CPU.
    pub peak_flops: Option<f64>,
    /// On CUDA, capture the whole step once as a CUDA graph and replay it (when the optimizer
    /// is capturable and batches keep one shape); false: eager steps.
    pub cuda_graph: bool,
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
            precision: Precision::Auto,
            activation_checkpointing: false,
            data: None,
            val_data: None,
            output_dir: None,
            log_every: trainer.log_every,
            eval_every: trainer.eval_every,
            eval_batches: trainer.eval_batches,
            max_grad_norm: trainer.max_grad_norm,
            grad_accum_steps: trainer.grad_accum_steps,
            peak_flops: trainer.peak_flops,
            cuda_graph: trainer.cuda_graph,
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

    /// The kind models compute in: `precision`, with `auto` resolved for `device`.
    pub fn compute_kind(&self) -> Result<tch::Kind> {
        Ok(match self.precision {
            Precision::Bf16 => tch::Kind::BFloat16,
            Precision::Fp32 => tch::Kind::Float,
            Precision::Auto if self.device()?.is_cuda() => tch::Kind::BFloat16,
            Precision::Auto => tch::Kind::Float,
        })
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
            grad_accum_steps: self.grad_accum_steps,
            peak_flops: self.peak_flops,
            cuda_graph: self.cuda_graph,
        }
    }
}
