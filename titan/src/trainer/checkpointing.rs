//! A run's state in and out of a checkpoint: the model's weights (`model.safetensors`, Hugging
//! Face names), the optimizer's state (`optimizer.safetensors`), and the step, the scheduler's
//! step count and the training dataloader's position (`train_state.json`), plus whatever files
//! the caller adds (the resolved configuration). Restoring checks every file's checksum and every
//! weight's name and shape before it copies any; any error stops the run before its first step.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::parts::Parts;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::{Error, Result};

const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const TRAIN_STATE: &str = "train_state.json";

/// The loop's own state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainState {
    /// Optimizer steps taken.
    step: u64,
    /// Steps the LR scheduler has taken.
    scheduler_steps: u64,
    /// The training dataloader's completed passes.
    epoch: u64,
    /// The training dataloader's position (its `Dataloader::State`).
    train_data: serde_json::Value,
}

/// When and where a run saves checkpoints, and the files each one carries besides the run's
/// state.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    store: CheckpointStore,
    every: u64,
    extra: Vec<(String, Vec<u8>)>,
}

impl Checkpointing {
    /// A checkpoint into `store` every `every` steps (and at the end), each with the `extra`
    /// files (name, contents).
    pub fn new(store: CheckpointStore, every: u64, extra: Vec<(String, Vec<u8>)>) -> Result<Self> {
        if every == 0 {
            return Err(Error::config(
                "training.checkpoint_every",
                every,
                "must be positive to save checkpoints",
            ));
        }
        Ok(Self {
            store,
            every,
            extra,
        })
    }

    /// Whether step `step` of a run of `steps` ends with a checkpoint.
    pub(crate) fn due(&self, step: u64, steps: u64) -> bool {
        step.is_multiple_of(self.every) || step == steps
    }

    /// Writes step `step`'s checkpoint of `parts`: everything is copied to the host here, at
    /// the step boundary, then written whole or not at all.
    pub(crate) fn save<Lab>(&self, step: u64, parts: &Parts<'_, Lab>) -> Result<Checkpoint> {
        let weights = parts
            .params
            .iter()
            .map(|(name, p)| Ok((name.clone(), p.f_detach()?.f_to(Device::Cpu)?)))
            .collect::<Result<Vec<_>>>()?;
        let optimizer = parts.update.optimizer_state()?;
        let state = TrainState {
            step,
            scheduler_steps: parts.update.scheduler_steps(),
            epoch: parts.data.epoch(),
            train_data: parts.data.state()?,
        };
        let state = serde_json::to_vec_pretty(&state)?;
        self.store.save(step, |dir| {
            Tensor::write_safetensors(&weights, dir.join(MODEL))?;
            Tensor::write_safetensors(&optimizer, dir.join(OPTIMIZER))?;
            write(dir, TRAIN_STATE, &state)?;
            for (name, bytes) in &self.extra {
                write(dir, name, bytes)?;
            }
            Ok(())
        })
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
}

/// Restores `parts` from `checkpoint` and returns its step: every file's checksum, then every
/// weight's name and shape are checked before anything is copied.
pub(crate) fn restore<Lab>(checkpoint: &Checkpoint, parts: &mut Parts<'_, Lab>) -> Result<u64> {
    checkpoint.verify()?;
    let misfit = |what: String| {
        Error::Checkpoint(format!(
            "{} does not fit this run: {what}; use another --output-dir for this run",
            checkpoint.dir().display()
        ))
    };
    let mut saved: HashMap<String, Tensor> = Tensor::read_safetensors(checkpoint.file(MODEL)?)?
        .into_iter()
        .collect();
    let mut copies = Vec::with_capacity(parts.params.len());
    for (name, p) in &parts.params {
        let Some(w) = saved.remove(name) else {
            return Err(misfit(format!(
                "it has no weight `{name}`, which the model has"
            )));
        };
        if w.size() != p.size() {
            return Err(misfit(format!(
                "weight `{name}` has shape {:?} there and {:?} in the model",
                w.size(),
                p.size()
            )));
        }
        copies.push((p.shallow_clone(), w));
    }
    if let Some(extra) = saved.keys().min() {
        return Err(misfit(format!(
            "it has weight `{extra}`, which the model has not"
        )));
    }
    let state: TrainState = serde_json::from_slice(&checkpoint.read(TRAIN_STATE)?)
        .map_err(|e| misfit(format!("{TRAIN_STATE} is not titan's: {e}")))?;
    let optimizer = Tensor::read_safetensors(checkpoint.file(OPTIMIZER)?)?;
    // The optimizer and the dataloader check their own state before they change.
    parts.update.load_optimizer_state(optimizer)?;
    parts.data.load_state(state.train_data)?;
    parts.update.set_scheduler_steps(state.scheduler_steps);
    let _guard = tch::no_grad_guard();
    for (mut p, w) in copies {
        p.f_copy_(&w)?;
    }
    Ok(state.step)
}
