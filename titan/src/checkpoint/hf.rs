//! The Hugging Face form of a run's result: a directory `transformers` loads with
//! `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`, written whole or
//! not at all: into a hidden partial directory, fsynced, then renamed into place. Only an
//! empty directory or a previous export is ever replaced (moved aside, and removed once the new
//! one is in place); a directory holding anything else is refused.

use std::path::Path;

use super::store::sync_dir;
use crate::model::{Model, SpecialTokens};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The file that marks a directory as titan's export, with the training step its model is from
/// (`{"step": N}`, `null` when not given), so a run can tell an export of its end from one of an
/// earlier end ([`exported_step`]), and only titan's own exports are ever replaced.
pub const EXPORT_STAMP: &str = "titan_export.json";

/// Writes `model` (its `save_hf`) and `tokenizer` (its `save_hf`) into `dir`, replacing a
/// previous export there only once the new one is complete.
pub fn export_hf<M, T>(model: &M, tokenizer: &T, dir: &Path) -> Result<()>
where
    M: Model + ?Sized,
    T: Tokenizer + ?Sized,
{
    export_hf_at(model, tokenizer, dir, None)
}

/// The training step of the export in `dir`, when it recorded one ([`EXPORT_STAMP`]).
pub fn exported_step(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join(EXPORT_STAMP)).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("step")?
        .as_u64()
}

/// [`export_hf`] of a model at training step `step`, which the export records when given.
pub fn export_hf_at<M, T>(model: &M, tokenizer: &T, dir: &Path, step: Option<u64>) -> Result<()>
where
    M: Model + ?Sized,
    T: Tokenizer + ?Sized,
{
    // `.`, `..` and trailing separators name a directory by its real path.
    let dir = &match std::fs::canonicalize(dir) {
        Ok(real) => real,
        Err(_) => dir.to_path_buf(),
    };
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::config(
            "export directory",
            dir.display(),
            "needs a final component with a UTF-8 name",
        )
    })?;
    let old = dir.with_file_name(format!(".{name}.old"));
    // A crash between the two renames below left the previous export aside: put it back.
    if old.exists() && !dir.exists() {
        std::fs::rename(&old, dir).map_err(|e| Error::io(&old, e))?;
    }
    check_replaceable(dir)?;
    let partial = dir.with_file_name(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let tokens = SpecialTokens {
        bos: tokenizer.bos_id(),
        eos: tokenizer.eos_id(),
        pad: tokenizer.pad_id(),
    };
    let written = model
        .save_hf(&partial, &tokens)
        .and_then(|()| tokenizer.save_hf(&partial))
        .and_then(|()| {
            let path = partial.join(EXPORT_STAMP);
            let json = serde_json::json!({ "step": step }).to_string();
            std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    sync_files(&partial)?;
    let parent = partial
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    if let Err(e) = std::fs::rename(&partial, dir) {
        // Put the previous export back rather than leave none.
        if old.exists() {
            let _ = std::fs::rename(&old, dir);
        }
        return Err(Error::io(dir, e));
    }
    sync_dir(parent)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// The files an export holds: a directory with nothing else may be replaced.
const EXPORT_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    EXPORT_STAMP,
];

/// Refuses `dir` unless it is absent, empty, or titan's previous export (its stamp, and only
/// [`EXPORT_FILES`]), so `--export-hf` never deletes a directory of something else (a run's
/// output directory, a folder of models, a model `save_pretrained` wrote).
fn check_replaceable(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::config(
                "export directory",
                dir.display(),
                "is a file: a Hugging Face export is a directory; name a new one",
            ));
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let names = entries
        .map(|entry| Ok(entry.map_err(|e| Error::io(dir, e))?.file_name()))
        .collect::<Result<Vec<_>>>()?;
    // A run's own `hf/` (beside its output directory's lock) may be an older titan's export,
    // which wrote no stamp.
    let runs_own = dir.file_name().is_some_and(|n| n == "hf")
        && dir
            .parent()
            .is_some_and(|run| run.join(super::OUTPUT_LOCK).is_file());
    if !names.is_empty() && !runs_own && !names.iter().any(|n| n == EXPORT_STAMP) {
        return Err(Error::config(
            "export directory",
            dir.display(),
            format!(
                "holds files titan did not export (no {EXPORT_STAMP}), e.g. a model \
                 `save_pretrained` wrote; export into a new or empty directory (only titan's \
                 own previous export is replaced)"
            ),
        ));
    }
    for name in &names {
        let name = name.to_string_lossy();
        if !EXPORT_FILES.contains(&name.as_ref()) {
            return Err(Error::config(
                "export directory",
                dir.display(),
                format!(
                    "holds `{name}`, which is not part of a Hugging Face export; export into a \
                     new or empty directory (only a previous export is replaced)"
                ),
            ));
        }
    }
    Ok(())
}

/// Fsyncs every file of `dir`, then `dir` itself.
fn sync_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
    }
    sync_dir(dir)
}
