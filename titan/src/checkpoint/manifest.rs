//! What a checkpoint directory holds: the titan and format versions that wrote it, the
//! experiment and step, and every file with its size and CRC-32C, written last so that its
//! presence means the rest is complete.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bad;
use crate::{Error, Result};

/// The checkpoint format this titan writes and reads; a manifest with a larger one comes from
/// a newer titan. Format 2 keeps each role's state apart (`ROLE_state.safetensors`, and
/// `components` in `train_state.json`); format 1 had the optimizer's and scheduler's only.
pub const FORMAT: u32 = 2;

/// The manifest's file name inside a checkpoint directory.
pub(super) const MANIFEST: &str = "manifest.json";

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name inside the checkpoint directory.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32C of its contents.
    pub crc32c: u32,
}

/// A checkpoint's description, `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The checkpoint format ([`FORMAT`] when this titan wrote it).
    pub format: u32,
    /// The titan version that wrote it.
    pub titan_version: String,
    /// The experiment whose run it is (its binary's name).
    pub experiment: String,
    /// Optimizer steps taken when it was written.
    pub step: u64,
    /// Every other file of the directory, sorted by name.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Reads `dir`'s manifest, refusing one from a newer titan or another experiment.
    pub fn read(dir: &Path, experiment: &str) -> Result<Self> {
        Self::read_or_damaged(dir, experiment)?.map_err(|reason| bad(dir, reason))
    }

    /// Reads `dir`'s manifest; `Ok(Err(reason))` where it is damaged (missing, or not a
    /// manifest: a checkpoint to step back from), `Err` where it is a sound manifest this run
    /// must not take (a newer or older format, another experiment) or cannot be read at all.
    pub(super) fn read_or_damaged(
        dir: &Path,
        experiment: &str,
    ) -> Result<std::result::Result<Self, String>> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err(format!(
                    "no {MANIFEST}: not a complete titan checkpoint"
                )));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        // The format first, so a newer titan's manifest is refused as such, whatever else
        // changed in it.
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return Ok(Err(format!(
                "{MANIFEST} ({} bytes) is not JSON: damaged",
                text.len()
            )));
        };
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(f) if f > u64::from(FORMAT) => {
                return Err(bad(
                    dir,
                    format!(
                        "written in checkpoint format {f} by a newer titan; this titan ({}) reads \
                         format {FORMAT}",
                        env!("CARGO_PKG_VERSION")
                    ),
                ));
            }
            Some(f) if f < u64::from(FORMAT) => {
                return Err(bad(
                    dir,
                    format!(
                        "written in checkpoint format {f} by an older titan; this titan ({}) reads \
                         format {FORMAT}: finish that run with the titan that wrote it, or start \
                         this one in another --output-dir",
                        env!("CARGO_PKG_VERSION")
                    ),
                ));
            }
            None => return Ok(Err(format!("{MANIFEST} has no checkpoint format: damaged"))),
            Some(_) => {}
        }
        let manifest: Self = match serde_json::from_value(value) {
            Ok(manifest) => manifest,
            Err(e) => return Ok(Err(format!("{MANIFEST} is not a titan manifest: {e}"))),
        };
        if manifest.experiment != experiment {
            return Err(bad(
                dir,
                format!(
                    "a checkpoint of experiment `{}`, not `{experiment}`; use another \
                     --output-dir for this experiment",
                    manifest.experiment
                ),
            ));
        }
        Ok(Ok(manifest))
    }

    /// The entry for file `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}
