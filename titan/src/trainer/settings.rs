//! `TrainingConfig`: the run's settings, defined once: the loop's (steps, cadence, clipping,
//! accumulation, CUDA graphs) and the run's (batch, data paths, device, output). An
//! experiment's `training` section is this struct, and [`SHORTHANDS`] lists the keys the
//! standard flags (`--steps`, `--batch-size`, `--data`…) write to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::data::Batching;
use crate::{Error, Result};

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
    /// Where metrics and outputs go; unset: `runs/<experiment>`, filled in by the experiment.
    pub output_dir: Option<PathBuf>,
    /// Log every this many steps.
    pub log_every: u64,
    /// Evaluate every this many steps (0: at the end only).
    pub eval_every: u64,
    /// Validation batches per evaluation.
    pub eval_batches: usize,
    /// Clip the global gradient norm to this; exactly 0 turns clipping off (said in the run's
    /// first line). Negative or NaN is an error.
    pub max_grad_norm: f64,
    /// Steps in a row whose loss or gradient norm may be NaN or infinite before the run stops;
    /// the optimizer skips each on the device, leaving the weights as they were (titan's all do;
    /// an optimizer that cannot makes the run stop at the first). 0: stop at the first.
    pub max_skipped_steps: u64,
    /// Micro-batches of `batch_size` per optimizer step, gradients weighted by token count.
    pub grad_accum_steps: usize,
    /// Peak FLOP/s of one device, for MFU; unset: known GPUs' bf16 peak, none on CPU.
    pub peak_flops: Option<f64>,
    /// On CUDA, capture the whole step once as a CUDA graph and replay it (when the optimizer
    /// is capturable and batches keep one shape); false: eager steps.
    pub cuda_graph: bool,
    /// On CUDA, let float32 matmuls use TF32 tensor cores (PyTorch's
    /// `torch.backends.cuda.matmul.allow_tf32`); off by default, as in PyTorch and torchtitan.
    /// bf16 runs are unaffected; the CPU has no TF32.
    pub tf32: bool,
    /// Save a checkpoint (`output_dir/checkpoints/step-N`) every this many steps and at the end;
    /// 0: none. A rerun in the same output directory resumes from the latest one.
    pub checkpoint_every: u64,
    /// Checkpoints kept: the oldest beyond this many are removed after each save.
    pub keep_checkpoints: usize,
    /// Resume from this checkpoint directory instead of the output directory's latest.
    pub resume_from: Option<PathBuf>,
    /// Start a new run from the weights of this Hugging Face directory (`config.json`,
    /// `model.safetensors`) instead of a random initialisation; a resumed run ignores it.
    pub init_from_hf: Option<PathBuf>,
    /// Trace steps with libtorch's profiler (Kineto: operators with their input shapes, and
    /// CUDA kernels on a GPU) every this many steps, as torchtitan's `profiling.profile_freq`:
    /// the last `profile_steps` of every such span go to
    /// `output_dir/profile/step-N/rankR.pt.trace.json` (Perfetto, TensorBoard); 0: none.
    pub profile_every: u64,
    /// Steps in each trace: the last ones of every `profile_every` span.
    pub profile_steps: u64,
    /// Continuations of `prompt` printed at the end.
    pub samples: usize,
    /// Prompt of the end-of-run samples.
    pub prompt: String,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 8,
            seq_len: 512,
            seed: 0,
            device: "auto".into(),
            precision: Precision::Auto,
            activation_checkpointing: false,
            data: None,
            val_data: None,
            output_dir: None,
            log_every: 10,
            eval_every: 0,
            eval_batches: 8,
            max_grad_norm: 1.0,
            max_skipped_steps: 3,
            grad_accum_steps: 1,
            peak_flops: None,
            cuda_graph: true,
            tf32: false,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            resume_from: None,
            init_from_hf: None,
            profile_every: 0,
            profile_steps: 1,
            samples: 3,
            prompt: "Once upon a time".into(),
        }
    }
}

impl TrainingConfig {
    /// The Tiny Titan recipe (6,500 steps of 32 × 512, a checkpoint every 500) when libtorch
    /// sees a GPU; on CPU a run of 250 steps of 8 × 512 that finishes in minutes (a checkpoint
    /// every 100).
    pub fn tiny_titan() -> Self {
        let gpu = tch::Cuda::is_available();
        Self {
            steps: if gpu { 6500 } else { 250 },
            batch_size: if gpu { 32 } else { 8 },
            checkpoint_every: if gpu { 500 } else { 100 },
            ..Self::default()
        }
    }

    /// Checks every setting that has a valid range, before anything is built, and that the
    /// device, precision and output directory name something this machine has: an error names
    /// the key, the value and the range. Nothing is clamped into range silently.
    pub fn validate(&self) -> Result<()> {
        self.validate_ranges()?;
        self.compute_kind()?;
        if let Some(dir) = &self.output_dir
            && dir.exists()
            && !dir.is_dir()
        {
            return Err(Error::config(
                "training.output_dir",
                dir.display(),
                "is a file, not a directory",
            ));
        }
        Ok(())
    }

    /// The data of a run that trains, before a tokenizer trains or data is read: a `--data`
    /// or `--val-data` that is not there (a glob is matched later, by the loader, which names
    /// the pattern). An export reads none.
    pub fn check_data(&self) -> Result<()> {
        for (key, path) in [("data", &self.data), ("val_data", &self.val_data)] {
            if let Some(path) = path
                && !path.to_string_lossy().contains(['*', '?', '['])
                && !path.exists()
            {
                return Err(Error::config(
                    &format!("training.{key}"),
                    path.display(),
                    "no such file or directory",
                ));
            }
        }
        Ok(())
    }

    /// The Hugging Face directory a new run starts from (`--init-from-hf`; a resume takes the
    /// checkpoint's weights instead): there, with its `config.json`.
    pub fn check_init_from_hf(&self) -> Result<()> {
        let bad = |path: &std::path::Path, why: &str| {
            Err(Error::config("training.init_from_hf", path.display(), why))
        };
        if let Some(dir) = &self.init_from_hf {
            if !dir.is_dir() {
                return bad(
                    dir,
                    "no such directory (a Hugging Face model directory: config.json and \
                     model.safetensors)",
                );
            }
            if !dir.join("config.json").is_file() {
                return bad(
                    dir,
                    "holds no config.json: not a Hugging Face model directory",
                );
            }
        }
        Ok(())
    }

    /// [`TrainingConfig::validate`] without the machine: the ranges alone, which hold wherever
    /// the settings are printed.
    pub fn validate_ranges(&self) -> Result<()> {
        let at_least = |key: &str, value: u64, min: u64, why: &str| {
            if value >= min {
                return Ok(());
            }
            Err(Error::config(
                &format!("training.{key}"),
                value,
                format!("must be at least {min}{why}"),
            ))
        };
        // An empty path (an unset shell variable) would be the working directory.
        for (key, path) in [
            ("data", &self.data),
            ("val_data", &self.val_data),
            ("output_dir", &self.output_dir),
            ("resume_from", &self.resume_from),
            ("init_from_hf", &self.init_from_hf),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(Error::config(
                    &format!("training.{key}"),
                    "\"\"",
                    "is empty: name a path, or leave it unset",
                ));
            }
        }
        at_least("steps", self.steps, 1, "")?;
        at_least("batch_size", self.batch_size as u64, 1, "")?;
        at_least(
            "seq_len",
            self.seq_len as u64,
            2,
            " (a causal LM predicts each token from those before it)",
        )?;
        at_least("log_every", self.log_every, 1, "")?;
        at_least(
            "eval_batches",
            self.eval_batches as u64,
            1,
            "; `eval_every = 0` evaluates only at the end",
        )?;
        at_least("grad_accum_steps", self.grad_accum_steps as u64, 1, "")?;
        if self.checkpoint_every > 0 {
            at_least(
                "keep_checkpoints",
                self.keep_checkpoints as u64,
                1,
                " while checkpoints are saved (`checkpoint_every = 0` saves none)",
            )?;
        }
        if self.profile_every > 0 && !(1..=self.profile_every).contains(&self.profile_steps) {
            return Err(Error::config(
                "training.profile_steps",
                self.profile_steps,
                format!(
                    "must be from 1 to training.profile_every = {} (the steps traced of every \
                     span of that many)",
                    self.profile_every
                ),
            ));
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return Err(Error::config(
                "training.max_grad_norm",
                self.max_grad_norm,
                "must be a finite number above 0, or exactly 0 to turn clipping off",
            ));
        }
        if let Some(peak) = self.peak_flops
            && !(peak.is_finite() && peak > 0.0)
        {
            return Err(Error::config(
                "training.peak_flops",
                peak,
                "must be a finite number above 0, or unset",
            ));
        }
        Ok(())
    }

    /// Tokens the run trains on: steps × batch × sequence × micro-batches.
    pub fn tokens(&self) -> usize {
        [self.batch_size, self.seq_len, self.grad_accum_steps]
            .into_iter()
            .fold(self.steps as usize, usize::saturating_mul)
    }

    /// The batches a loader makes for this run: `batch_size` rows of `seq_len`, seeded by
    /// `seed`.
    pub fn batching(&self) -> Batching {
        Batching {
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            seed: self.seed,
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

    /// This run's settings as experiment `name` runs them: `output_dir` is `runs/<name>`
    /// unless set (the `#[experiment]` builder does this, so `--print-config` shows it).
    pub fn for_experiment(mut self, name: &str) -> Self {
        if self.output_dir.is_none() {
            self.output_dir = Some(PathBuf::from("runs").join(name));
        }
        self
    }

    /// Where metrics, the tokenizer and outputs go: `output_dir`, which an experiment sets to
    /// `runs/<its name>` unless given (see [`Self::for_experiment`]); `runs` when unset.
    pub fn output_dir(&self) -> PathBuf {
        self.output_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs"))
    }
}

/// A command-line flag that is a shorthand for `--set training.KEY=VALUE`: `--steps 100` is
/// `--set training.steps=100`. The flag is the key with `-` for `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shorthand {
    /// The [`TrainingConfig`] key.
    pub key: &'static str,
    /// The flag's value is text (a path or a name), never read as a number or `null`.
    pub text: bool,
    /// The flag's help line.
    pub help: &'static str,
}

impl Shorthand {
    /// The flag's long name, e.g. `batch-size`.
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }
}

const fn flag(key: &'static str, text: bool, help: &'static str) -> Shorthand {
    Shorthand { key, text, help }
}

/// The standard flags every experiment binary accepts, in `--help` order: each names one
/// [`TrainingConfig`] key, and takes its type and validity from there.
pub const SHORTHANDS: &[Shorthand] = &[
    flag("steps", false, "Optimizer steps to run"),
    flag(
        "data",
        true,
        "Training data: a `.txt`, `.jsonl` (either also `.gz` or `.zst`) or `.parquet` file, a directory or a glob of them",
    ),
    flag(
        "val_data",
        true,
        "Validation data, same forms; default: every 20th document of each training file",
    ),
    flag(
        "output_dir",
        true,
        "Where metrics, the tokenizer and outputs go; default `runs/<experiment>`",
    ),
    flag(
        "seed",
        false,
        "Seed of data order, initialisation and sampling",
    ),
    flag("device", true, "`cpu`, `cuda`, `cuda:N` or `auto`"),
    flag("batch_size", false, "Sequences per step"),
    flag("log_every", false, "Log every this many steps"),
    flag(
        "eval_every",
        false,
        "Evaluate every this many steps, 0 for the end only",
    ),
    flag(
        "samples",
        false,
        "Number of prompt continuations printed at the end",
    ),
    flag(
        "grad_accum_steps",
        false,
        "Micro-batches per optimizer step, token-weighted",
    ),
    flag(
        "peak_flops",
        false,
        "Peak FLOP/s of one device for MFU, e.g. `1e12` on CPU",
    ),
    flag(
        "checkpoint_every",
        false,
        "Save a checkpoint every this many steps and at the end, 0 for none",
    ),
    flag(
        "keep_checkpoints",
        false,
        "Checkpoints kept (the latest ones)",
    ),
    flag(
        "resume_from",
        true,
        "Resume from this checkpoint directory; default: the output directory's latest",
    ),
    flag(
        "init_from_hf",
        true,
        "Start a new run from the weights of this Hugging Face Llama directory",
    ),
    flag(
        "profile_every",
        false,
        "Trace the last step of every N with libtorch's profiler into `output_dir/profile/` (`training.profile_steps` steps each), 0 for none",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_that_are_not_there_are_errors_naming_the_key_before_anything_runs() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "x").map_err(|e| Error::io(&file, e))?;
        let missing = dir.path().join("missing");
        let with = |f: &dyn Fn(&mut TrainingConfig)| {
            let mut c = TrainingConfig::default();
            f(&mut c);
            c.validate()
                .and_then(|()| c.check_data())
                .and_then(|()| c.check_init_from_hf())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let err = with(&|c| c.data = Some(missing.clone()));
        assert!(
            err.contains("training.data") && err.contains("no such file"),
            "{err}"
        );
        let err = with(&|c| c.val_data = Some(missing.clone()));
        assert!(err.contains("training.val_data"), "{err}");
        // A glob is matched by the loader, which names the pattern.
        assert_eq!(with(&|c| c.data = Some(dir.path().join("*.jsonl"))), "");
        let err = with(&|c| c.output_dir = Some(file.clone()));
        assert!(
            err.contains("training.output_dir") && err.contains("is a file"),
            "{err}"
        );
        let err = with(&|c| c.init_from_hf = Some(missing.clone()));
        assert!(
            err.contains("training.init_from_hf") && err.contains("no such directory"),
            "{err}"
        );
        let err = with(&|c| c.init_from_hf = Some(dir.path().to_path_buf()));
        assert!(err.contains("holds no config.json"), "{err}");
        assert_eq!(with(&|c| c.data = Some(file.clone())), "");
        Ok(())
    }

    #[test]
    fn settings_out_of_range_are_errors_naming_the_key_not_clamps() {
        assert!(TrainingConfig::default().validate().is_ok());
        let cases: Vec<(TrainingConfig, &str)> = vec![
            (
                TrainingConfig {
                    steps: 0,
                    ..TrainingConfig::default()
                },
                "training.steps",
            ),
            (
                TrainingConfig {
                    seq_len: 1,
                    ..TrainingConfig::default()
                },
                "training.seq_len",
            ),
            (
                TrainingConfig {
                    batch_size: 0,
                    ..TrainingConfig::default()
                },
                "training.batch_size",
            ),
            (
                TrainingConfig {
                    log_every: 0,
                    ..TrainingConfig::default()
                },
                "training.log_every",
            ),
            (
                TrainingConfig {
                    output_dir: Some(PathBuf::new()),
                    ..TrainingConfig::default()
                },
                "training.output_dir",
            ),
            (
                TrainingConfig {
                    data: Some(PathBuf::new()),
                    ..TrainingConfig::default()
                },
                "training.data",
            ),
            (
                TrainingConfig {
                    eval_batches: 0,
                    ..TrainingConfig::default()
                },
                "training.eval_batches",
            ),
            (
                TrainingConfig {
                    grad_accum_steps: 0,
                    ..TrainingConfig::default()
                },
                "training.grad_accum_steps",
            ),
            (
                TrainingConfig {
                    max_grad_norm: -1.0,
                    ..TrainingConfig::default()
                },
                "training.max_grad_norm",
            ),
            (
                TrainingConfig {
                    max_grad_norm: f64::NAN,
                    ..TrainingConfig::default()
                },
                "training.max_grad_norm",
            ),
            (
                TrainingConfig {
                    checkpoint_every: 10,
                    keep_checkpoints: 0,
                    ..TrainingConfig::default()
                },
                "training.keep_checkpoints",
            ),
            (
                TrainingConfig {
                    peak_flops: Some(0.0),
                    ..TrainingConfig::default()
                },
                "training.peak_flops",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        // Exactly 0 is the documented way to turn clipping off.
        let off = TrainingConfig {
            max_grad_norm: 0.0,
            ..TrainingConfig::default()
        };
        assert!(off.validate().is_ok());
    }

    #[test]
    fn every_shorthand_names_a_training_key_once() -> Result<()> {
        let tree = serde_json::to_value(TrainingConfig::default())?;
        let keys: Vec<&str> = SHORTHANDS.iter().map(|s| s.key).collect();
        for key in &keys {
            assert!(
                tree.get(key).is_some(),
                "`{key}` is not a TrainingConfig key"
            );
            assert_eq!(
                keys.iter().filter(|k| *k == key).count(),
                1,
                "`{key}` twice"
            );
        }
        Ok(())
    }
}
