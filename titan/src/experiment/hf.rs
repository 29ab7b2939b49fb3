//! The Hugging Face ends of a run, as the generated code and the binary call them: the export
//! at the end of a run, `--export-hf PATH` from a checkpoint, and `--init-from-hf PATH` before
//! a new run's first step.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::trainer::TrainingConfig;
use crate::{Error, Result};

/// Writes the trained model and its tokenizer to `output_dir/hf` for `transformers`; a model
/// or tokenizer without a Hugging Face form is noted, not an error.
pub fn export_hf<M, T>(model: &M, tokenizer: &T, training: &TrainingConfig) -> Result<()>
where
    M: Model,
    T: Tokenizer,
{
    // Rank 0 writes the run's outputs; every rank holds the same weights.
    if !crate::dist::writes_outputs()? {
        return Ok(());
    }
    let dir = training.output_dir().join("hf");
    // The run's end: its last step.
    match crate::checkpoint::export_hf_at(model, tokenizer, &dir, Some(training.steps)) {
        Ok(()) => {
            eprintln!("hugging face: {}", dir.display());
            Ok(())
        }
        Err(Error::Unsupported(why)) => {
            eprintln!("note: no Hugging Face export: {why}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Loads `checkpoint`'s weights into `model` (checksums, names and shapes checked first) and
/// writes it with `tokenizer` to `dir` in Hugging Face's form.
pub fn export_checkpoint<M, T>(
    model: &mut M,
    tokenizer: &T,
    checkpoint: &Checkpoint,
    dir: &Path,
) -> Result<()>
where
    M: Model,
    T: Tokenizer,
{
    checkpoint.verify()?;
    // Asked for by name: a diverged run's weights are exported, with what they are said.
    if let Err(e) = crate::trainer::ended_finite(checkpoint) {
        tracing::warn!(
            "exporting {} as asked, though {e}",
            checkpoint.dir().display()
        );
    }
    // Weights and a tokenizer export as a pair only when they were trained as one.
    let saved = crate::trainer::tokenizer_of(checkpoint)?;
    crate::trainer::check_tokenizer(
        checkpoint,
        saved.as_deref(),
        tokenizer.fingerprint().as_deref(),
    )?;
    checkpoint.load_model_weights(&model.parameters().named(), |what| {
        Error::Checkpoint(format!(
            "{} does not fit the experiment's model: {what}",
            checkpoint.dir().display()
        ))
    })?;
    crate::checkpoint::export_hf_at(model, tokenizer, dir, Some(checkpoint.step()))
}

/// Refuses `training.init_from_hf` (when set, and the run does not resume) whose directory's
/// `tokenizer.json` is another tokenizer than the run's `tokenizer`: its weights' embedding rows
/// would stand for other tokens, and nothing else would tell (the vocabularies may be the same
/// size). Compared by what they do ([`crate::tokenizer::probe_fingerprint`]); a directory
/// without a `tokenizer.json`, or one that cannot be read, is a warning.
pub fn init_tokenizer_matches<T: Tokenizer + ?Sized>(
    tokenizer: &T,
    training: &TrainingConfig,
    resumes: bool,
) -> Result<()> {
    let Some(dir) = training.init_from_hf.as_deref().filter(|_| !resumes) else {
        return Ok(());
    };
    let path = dir.join("tokenizer.json");
    // Every rank compares the same files: rank 0 says what it finds.
    let speaks = crate::dist::speaks();
    if !path.is_file() {
        if speaks {
            tracing::warn!(
                "{} has no tokenizer.json: nothing tells whether its weights' token ids are \
                 the run's tokenizer's",
                dir.display()
            );
        }
        return Ok(());
    }
    let theirs = crate::tokenizer::BpeTokenizer::from_file(&path, tokenizer.max_len())
        .and_then(|t| crate::tokenizer::probe_fingerprint(&t));
    let ours = crate::tokenizer::probe_fingerprint(tokenizer);
    match (theirs, ours) {
        (Ok(theirs), Ok(ours)) if theirs != ours => Err(Error::config(
            "training.init_from_hf",
            dir.display(),
            format!(
                "its tokenizer.json is another tokenizer than the run's (its ids stand for \
                 other text, so its embedding rows would mean other tokens); train with it: \
                 copy {} into the output directory before the first run, where it is reused \
                 as the run's tokenizer",
                path.display()
            ),
        )),
        (Ok(_), Ok(_)) => Ok(()),
        (Err(_), _) | (_, Err(_)) if !speaks => Ok(()),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(
                "{}: cannot compare it with the run's tokenizer ({e}): make sure the run's \
                 token ids are the ones its weights were trained on",
                path.display()
            );
            Ok(())
        }
    }
}

/// Loads the weights of `training.init_from_hf`, when set, into `model`; a run that resumes
/// from a checkpoint does not (the checkpoint's weights win).
pub fn init_from_hf<M: Model>(
    model: &mut M,
    training: &TrainingConfig,
    resumes: bool,
) -> Result<()> {
    let Some(dir) = training.init_from_hf.as_deref().filter(|_| !resumes) else {
        return Ok(());
    };
    model.load_hf(dir)?;
    eprintln!("initialised the model from {}", dir.display());
    Ok(())
}
