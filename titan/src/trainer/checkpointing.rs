//! A run's state in and out of a checkpoint: the model's weights (`model.safetensors`, Hugging
//! Face names), every role's [`crate::checkpoint::Stateful`] state (its tensors in
//! `ROLE_state.safetensors`, e.g. the optimizer's moments, and its value in `train_state.json`,
//! e.g. the scheduler's steps), the random generators (`rng.safetensors`: the CPU's, and the
//! CUDA device's), and the step and the training dataloader's position (`train_state.json`),
//! plus whatever files the caller adds (the resolved configuration). Restoring checks every
//! file's checksum and every weight's name and shape before it copies any; any error stops the
//! run before its first step.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::nonfinite::{NonFinite, NonFiniteState};
use super::parts::Parts;
use crate::checkpoint::{Checkpoint, CheckpointStore, MODEL_FILE, StateDict};
use crate::data::Batching;
use crate::dist::ProcessGroup;
use crate::{Error, Result};

const TRAIN_STATE: &str = "train_state.json";
const RNG: &str = "rng.safetensors";

/// The loop's own state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainState {
    /// Optimizer steps taken.
    step: u64,
    /// The training dataloader's completed passes.
    epoch: u64,
    /// The training dataloader's position (its `Dataloader::State`); rank 0's in a
    /// data-parallel run.
    train_data: serde_json::Value,
    /// Every rank's position, by rank, in a run of several ranks (empty for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    train_data_by_rank: Vec<serde_json::Value>,
    /// Every role's state value (`StateDict::value`), by role.
    components: BTreeMap<String, serde_json::Value>,
    /// The non-finite steps skipped so far (absent in checkpoints from before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    non_finite: Option<NonFiniteState>,
    /// The fingerprint of the tokenizer the run's ids came from
    /// (`Tokenizer::fingerprint`), when the run has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer: Option<String>,
    /// The rows a micro-batch had (`training.batch_size`; absent in checkpoints from before it
    /// was kept): a resume at another one needs a dataloader that rebatches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_size: Option<usize>,
    /// The tokens a row had (`training.seq_len`; absent in checkpoints from before it was
    /// kept): a resume at another one needs a dataloader that reshapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq_len: Option<usize>,
}

/// What a resume changed that the restored components must accept (found by comparing the
/// checkpoint's configuration with the run's, before anything is built).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeChanges {
    /// The checkpoint's `training.batch_size`, where the run's differs (checkpoints record it
    /// too; this covers those written before they did).
    pub batch_size_was: Option<usize>,
    /// The checkpoint's `training.seq_len`, where the run's differs (for checkpoints written
    /// before they recorded it).
    pub seq_len_was: Option<usize>,
    /// The checkpoint's `training.data`, where the run names another path.
    pub data_was: Option<String>,
}

/// The file that holds `role`'s state tensors (written only when it has some).
fn tensors_file(role: &str) -> String {
    format!("{role}_state.safetensors")
}

/// When and where a run saves checkpoints, and the files each one carries besides the run's
/// state. The state is copied to the host at the step boundary and written on a thread of its
/// own while training goes on; one write runs at a time.
#[derive(Debug)]
pub struct Checkpointing {
    store: CheckpointStore,
    every: u64,
    extra: Arc<Vec<(String, Vec<u8>)>>,
    writing: Option<Writing>,
}

/// A checkpoint being written in the background.
#[derive(Debug)]
struct Writing {
    step: u64,
    copied: Duration,
    handle: JoinHandle<Result<(Checkpoint, Duration)>>,
}

/// A checkpoint written: where, and how long the copy (blocking the loop) and the write (in
/// the background) took.
#[derive(Debug)]
pub(crate) struct Saved {
    pub checkpoint: Checkpoint,
    pub copied: Duration,
    pub written: Duration,
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
        let mut checkpointing = Self {
            store,
            every,
            extra: Arc::new(Vec::new()),
            writing: None,
        };
        checkpointing.add_files(extra)?;
        Ok(checkpointing)
    }

    /// Adds `files` (name, contents) to those every checkpoint carries. A name titan's own
    /// files or one already added use is refused, naming it.
    pub fn add_files(&mut self, files: Vec<(String, Vec<u8>)>) -> Result<()> {
        for (i, (name, _)) in files.iter().enumerate() {
            let plain = std::path::Path::new(name).file_name() == Some(name.as_ref())
                && !name.starts_with('.');
            if !plain {
                return Err(Error::Checkpoint(format!(
                    "a file named {name:?} cannot join every checkpoint: a checkpoint holds \
                     plain, visible file names only"
                )));
            }
            let taken = [MODEL_FILE, TRAIN_STATE, RNG, "manifest.json"].contains(&name.as_str())
                || name.ends_with("_state.safetensors")
                || self.extra.iter().chain(&files[..i]).any(|(n, _)| n == name);
            if taken {
                return Err(Error::Checkpoint(format!(
                    "a file named {name} cannot join every checkpoint: one of that name is there \
                     already"
                )));
            }
        }
        Arc::make_mut(&mut self.extra).extend(files);
        Ok(())
    }

    /// Whether step `step` of a run of `steps` ends with a checkpoint.
    pub(crate) fn due(&self, step: u64, steps: u64) -> bool {
        step.is_multiple_of(self.every) || step == steps
    }

    /// Starts step `step`'s checkpoint of `parts`: everything is copied to the host now, at the
    /// step boundary, and written (whole or not at all) on a thread of its own. Returns the
    /// previous checkpoint, which it waits for first. With a process `group`, every rank gives
    /// its dataloader's position and rank 0 alone writes (the rest is equal on every rank); the
    /// other ranks wait with rank 0 for its previous write on the store, however long it takes,
    /// rather than in the next step's all-reduce, which the group's timeout bounds.
    pub(crate) fn save<Lab>(
        &mut self,
        step: u64,
        parts: &Parts<'_, Lab>,
        non_finite: &NonFinite,
        tokenizer: Option<String>,
        rows: &Batching,
        group: Option<&ProcessGroup>,
    ) -> Result<Option<Saved>> {
        let train_data = parts.data.state()?;
        let previous = match group {
            None => self.finish()?,
            Some(group) => group.rank_zero_first(
                &format!("checkpoint {step}: the previous checkpoint's write"),
                |writer| if writer { self.finish() } else { Ok(None) },
            )?,
        };
        let train_data_by_rank = match group {
            None => Vec::new(),
            Some(group) => {
                match group.gather_json(&format!("checkpoint/{step}/train_data"), &train_data)? {
                    Some(all) => all,
                    // Rank 0 writes.
                    None => return Ok(None),
                }
            }
        };
        let started = Instant::now();
        let weights = parts
            .params
            .iter()
            .map(|(name, p)| Ok((name.clone(), host_copy(p)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut components = BTreeMap::new();
        let mut role_tensors = Vec::new();
        for role in &parts.states {
            let StateDict { tensors, value } = role.save()?;
            components.insert(role.role().to_string(), value);
            if !tensors.is_empty() {
                let tensors = tensors
                    .into_iter()
                    .map(|(name, t)| Ok((name, host_copy(&t)?)))
                    .collect::<Result<Vec<_>>>()?;
                role_tensors.push((tensors_file(role.role()), tensors));
            }
        }
        let state = TrainState {
            step,
            epoch: parts.data.epoch(),
            train_data,
            train_data_by_rank,
            components,
            non_finite: Some(non_finite.state()?),
            tokenizer,
            batch_size: Some(rows.batch_size),
            seq_len: Some(rows.seq_len),
        };
        let state = serde_json::to_vec_pretty(&state)?;
        let rng = rng_states(parts.device)?;
        let copied = started.elapsed();
        let (store, extra) = (self.store.clone(), Arc::clone(&self.extra));
        let handle = std::thread::Builder::new()
            .name("titan-checkpoint".into())
            .spawn(move || {
                let started = Instant::now();
                let checkpoint = store.save(step, |dir| {
                    Tensor::write_safetensors(&weights, dir.join(MODEL_FILE))?;
                    for (file, tensors) in &role_tensors {
                        Tensor::write_safetensors(tensors, dir.join(file))?;
                    }
                    Tensor::write_safetensors(&rng, dir.join(RNG))?;
                    write(dir, TRAIN_STATE, &state)?;
                    for (name, bytes) in extra.iter() {
                        write(dir, name, bytes)?;
                    }
                    Ok(())
                })?;
                Ok((checkpoint, started.elapsed()))
            })
            .map_err(|e| Error::io("the checkpoint thread", e))?;
        self.writing = Some(Writing {
            step,
            copied,
            handle,
        });
        Ok(previous)
    }

    /// The checkpoint being written, once it is done (without waiting): its error as soon as
    /// there is one (a full disk stops the run now, not a checkpoint interval later), or where
    /// it went.
    pub(crate) fn finished(&mut self) -> Result<Option<Saved>> {
        match &self.writing {
            Some(writing) if writing.handle.is_finished() => self.finish(),
            _ => Ok(None),
        }
    }

    /// Waits for the checkpoint being written, if any: its error, or where it went.
    pub(crate) fn finish(&mut self) -> Result<Option<Saved>> {
        let Some(writing) = self.writing.take() else {
            return Ok(None);
        };
        let (checkpoint, written) = writing.handle.join().map_err(|panic| {
            Error::thread_panicked(&format!("writing checkpoint {}", writing.step), &*panic)
        })??;
        Ok(Some(Saved {
            checkpoint,
            copied: writing.copied,
            written,
        }))
    }
}

impl Drop for Checkpointing {
    /// A run that stops on an error still lets the checkpoint being written finish (whole).
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The default random generators the run draws from: the CPU's, and its CUDA device's.
fn rng_states(device: Device) -> Result<Vec<(String, Tensor)>> {
    let mut states = vec![("cpu".to_string(), crate::shim::rng_state(Device::Cpu)?)];
    if device.is_cuda() {
        states.push(("cuda".to_string(), crate::shim::rng_state(device)?));
    }
    Ok(states)
}

/// A copy of `t` on the host that training cannot change any more (on CPU `to` would share
/// the storage).
fn host_copy(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?
        .f_to_device_(Device::Cpu, t.kind(), false, true)?)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
}

/// Restores `parts` from `checkpoint` and returns its step, the number of data-parallel ranks
/// that wrote it and its count of skipped steps (when it kept one): every file's checksum, the train state and every weight's name and shape are
/// checked before any weight is copied; each component checks its own state before it changes.
/// With a process `group`, each rank takes its own dataloader position; a checkpoint of another
/// number of ranks gives every rank all their positions, to take its share of what they had
/// left ([`crate::Dataloader::load_resharded`]).
pub(crate) fn restore<Lab>(
    checkpoint: &Checkpoint,
    parts: &mut Parts<'_, Lab>,
    tokenizer: Option<&str>,
    rows: &Batching,
    changes: &ResumeChanges,
    group: Option<&ProcessGroup>,
) -> Result<(u64, usize, Option<NonFiniteState>)> {
    checkpoint.verify()?;
    let misfit = |what: String| {
        Error::Checkpoint(format!(
            "{} does not fit this run: {what}; use another --output-dir for this run",
            checkpoint.dir().display()
        ))
    };
    let mut state: TrainState = serde_json::from_slice(&checkpoint.read(TRAIN_STATE)?)
        .map_err(|e| misfit(format!("{TRAIN_STATE} is not titan's: {e}")))?;
    check_tokenizer(checkpoint, state.tokenizer.as_deref(), tokenizer)?;
    if let Some(was) = &changes.data_was
        && !parts.data.checks_files()
    {
        return Err(misfit(format!(
            "it read training.data = {was}, and the training dataloader (`{}`) does not check \
             that the files it reads now are the same: resume with --data {was}, or implement \
             `Dataloader::checks_files` for it",
            parts.data.type_name()
        )));
    }
    // Rows of another shape than the checkpoint's: only a dataloader whose position holds no
    // batch size (or row length) may resume at the new one.
    let reshaped = [
        (
            "batch_size",
            state.batch_size.or(changes.batch_size_was),
            rows.batch_size,
            parts.data.rebatches(),
            (|_| "batches".to_string()) as fn(usize) -> String,
            "--batch-size ",
            "rebatches",
        ),
        (
            "seq_len",
            state.seq_len.or(changes.seq_len_was),
            rows.seq_len,
            parts.data.reshapes(),
            |saved| format!("rows of {saved} tokens"),
            "--set training.seq_len=",
            "reshapes",
        ),
    ];
    for (key, saved, now, accepts, counts, flag, method) in reshaped {
        if let Some(saved) = saved.filter(|&s| s != now)
            && !accepts
        {
            return Err(misfit(format!(
                "it was written at training.{key} = {saved}, and the training dataloader \
                 (`{}`) cannot resume at {now}: its position may count {}; resume with \
                 {flag}{saved}, or implement `Dataloader::{method}` for it",
                parts.data.type_name(),
                counts(saved)
            )));
        }
    }
    let (rank, ranks) = group.map_or((0, 1), |g| (g.rank(), g.size()));
    let saved_ranks = state.train_data_by_rank.len().max(1);
    let train_data = if saved_ranks != ranks {
        let mut all = std::mem::take(&mut state.train_data_by_rank);
        if all.is_empty() {
            all.push(std::mem::take(&mut state.train_data));
        }
        TrainData::Resharded(all)
    } else {
        TrainData::Mine(match state.train_data_by_rank.get_mut(rank) {
            Some(mine) => std::mem::take(mine),
            None => std::mem::take(&mut state.train_data),
        })
    };
    let mut saved_states = Vec::with_capacity(parts.states.len());
    for role in &parts.states {
        let name = role.role();
        let Some(value) = state.components.remove(name) else {
            return Err(misfit(format!("it holds no state for the run's {name}")));
        };
        let file = tensors_file(name);
        let tensors = match checkpoint.manifest().file(&file) {
            Some(_) => Tensor::read_safetensors(checkpoint.file(&file)?)?,
            None => Vec::new(),
        };
        saved_states.push(StateDict { tensors, value });
    }
    if let Some(extra) = state.components.keys().next() {
        return Err(misfit(format!(
            "it holds state for a role `{extra}`, which this run has not"
        )));
    }
    checkpoint.load_model_weights(&parts.params, misfit)?;
    // Each component and the dataloader check their own state before they change.
    for (role, saved) in parts.states.iter_mut().zip(saved_states) {
        let name = role.role();
        role.load(saved)
            .map_err(|e| misfit(format!("the {name}'s state: {e}")))?;
    }
    match train_data {
        TrainData::Mine(position) => parts.data.load_state(position)?,
        TrainData::Resharded(positions) => parts.data.load_resharded(positions).map_err(|e| {
            Error::Checkpoint(format!(
                "{} was written by {saved_ranks} data-parallel rank(s) and this run has \
                 {ranks}, and the training data cannot be dealt anew: {e}",
                checkpoint.dir().display()
            ))
        })?,
    }
    if checkpoint.manifest().file(RNG).is_some() {
        for (name, rng) in Tensor::read_safetensors(checkpoint.file(RNG)?)? {
            match name.as_str() {
                "cpu" => crate::shim::set_rng_state(Device::Cpu, &rng)?,
                "cuda" if parts.device.is_cuda() => crate::shim::set_rng_state(parts.device, &rng)?,
                // A checkpoint of a CUDA run resumed on the CPU: its CUDA draws are not replayed.
                _ => {}
            }
        }
    }
    Ok((state.step, saved_ranks, state.non_finite))
}

/// Refuses `checkpoint` when its run's last steps were non-finite, each skipped (the run
/// diverged: [`NonFinite::ended_finite`]).
pub(crate) fn ended_finite(checkpoint: &Checkpoint) -> Result<()> {
    let state = train_state(checkpoint)?;
    match state.non_finite {
        Some(skipped) => skipped.ended_finite(state.step),
        None => Ok(()),
    }
}

/// The fingerprint of the tokenizer `checkpoint` was trained with, when it recorded one.
pub(crate) fn tokenizer_of(checkpoint: &Checkpoint) -> Result<Option<String>> {
    Ok(train_state(checkpoint)?.tokenizer)
}

/// `checkpoint`'s `train_state.json`, read and checked.
fn train_state(checkpoint: &Checkpoint) -> Result<TrainState> {
    serde_json::from_slice(&checkpoint.read(TRAIN_STATE)?).map_err(|e| {
        Error::Checkpoint(format!(
            "{}: {TRAIN_STATE} is not titan's: {e}",
            checkpoint.dir().display()
        ))
    })
}

/// Refuses `checkpoint` (trained with the tokenizer `saved`) for a run or export with the
/// tokenizer `now`: the same ids would stand for other text. Either unknown passes.
pub(crate) fn check_tokenizer(
    checkpoint: &Checkpoint,
    saved: Option<&str>,
    now: Option<&str>,
) -> Result<()> {
    // Checkpoints carry their tokenizer's files (`tokenizer.json`) since they recorded its
    // fingerprint's successor; older ones do not.
    match (saved, now) {
        (Some(saved), Some(now)) if saved != now => {
            let restore = match checkpoint.manifest().file("tokenizer.json") {
                Some(_) => format!(
                    "restore the tokenizer it was trained with (the checkpoint holds it: {}; copy \
                     it where the experiment's tokenizer is read, e.g. the output directory's \
                     tokenizer.json, deleting the tokenizer.fingerprint.json beside it, which \
                     describes the other one)",
                    checkpoint.dir().join("tokenizer.json").display()
                ),
                None => "restore the tokenizer.json it was trained with".to_string(),
            };
            Err(Error::Checkpoint(format!(
                "{} was trained with another tokenizer (it splits text otherwise: fingerprint {} \
             there, {} here): its ids stand for other text to this tokenizer; {restore}, or \
             start a new run (another --output-dir)",
                checkpoint.dir().display(),
                short(saved),
                short(now)
            )))
        }
        _ => Ok(()),
    }
}

/// The first 16 characters of a fingerprint, enough to tell two apart in a message.
fn short(identity: &str) -> String {
    identity.chars().take(16).collect()
}

/// The training data's position to restore: this rank's, or every old rank's when the
/// checkpoint comes from another number of ranks.
enum TrainData {
    Mine(serde_json::Value),
    Resharded(Vec<serde_json::Value>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files every checkpoint carries have plain names no other file of it has.
    #[test]
    fn a_carried_file_needs_a_plain_name_of_its_own() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = CheckpointStore::new(dir.path(), "test", 1)?;
        let file = |name: &str| (name.to_string(), b"x".to_vec());
        let mut checkpoints = Checkpointing::new(store, 1, vec![file("config.toml")])?;
        checkpoints.add_files(vec![file("tokenizer.json"), file("vocab.txt")])?;
        for (bad, why) in [
            ("../escape.json", "plain"),
            ("sub/dir.json", "plain"),
            (".hidden", "plain"),
            ("", "plain"),
            ("model.safetensors", "there already"),
            ("optimizer_state.safetensors", "there already"),
            ("config.toml", "there already"),
            ("tokenizer.json", "there already"),
        ] {
            let err = checkpoints
                .add_files(vec![file(bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = checkpoints
            .add_files(vec![file("twice.json"), file("twice.json")])
            .expect_err("twice in one call")
            .to_string();
        assert!(err.contains("twice.json"), "{err}");
        Ok(())
    }
}
