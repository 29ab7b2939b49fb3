//! The Hugging Face form of a run's result: a directory `transformers` loads with
//! `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`, written whole or
//! not at all: into a hidden partial directory, fsynced, then renamed into place; a previous
//! export is moved aside first and removed only once the new one is in place.

use std::path::Path;

use super::store::sync_dir;
use crate::model::{Model, SpecialTokens};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Writes `model` (its `save_hf`) and `tokenizer` (its `save_hf`) into `dir`, replacing a
/// previous export there only once the new one is complete.
pub fn export_hf<M, T>(model: &M, tokenizer: &T, dir: &Path) -> Result<()>
where
    M: Model + ?Sized,
    T: Tokenizer + ?Sized,
{
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::config("export directory", dir.display(), "needs a UTF-8 name"))?;
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
        .and_then(|()| tokenizer.save_hf(&partial));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    sync_files(&partial)?;
    let parent = partial
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let old = dir.with_file_name(format!(".{name}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&partial, dir).map_err(|e| Error::io(dir, e))?;
    sync_dir(parent)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
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
