//! The Hugging Face form of a run's result: a directory `transformers` loads with
//! `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`, written whole or
//! not at all (into a hidden partial directory, then renamed over the previous export).

use std::path::Path;

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
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&partial, dir).map_err(|e| Error::io(dir, e))
}
