//! Checkpoints: a run's state in `DIR/checkpoints/step-N/`, each directory written whole or not
//! at all ([`CheckpointStore`]) and described by a manifest that lists every file with its size
//! and checksum ([`Manifest`]), so a truncated or corrupt checkpoint is refused by name instead
//! of loaded. What goes in is every role's [`Stateful`] state, the model's weights and the
//! dataloader's position.

mod hf;
mod manifest;
mod state;
mod store;
mod weights;

pub use hf::{EXPORT_STAMP, export_hf, export_hf_at, exported_step};
pub use manifest::{FORMAT, FileEntry, Manifest};
pub use state::{StateDict, Stateful, Stateless};
pub use store::{Checkpoint, CheckpointStore, Damaged, MODEL_FILE};
pub use weights::{load_weights, read_weights};

use crate::Error;

/// The lock file of a run's output directory ([`crate::experiment::OutputLock`] holds it); an
/// export beside it is the run's own.
pub const OUTPUT_LOCK: &str = ".lock";

/// An error about the checkpoint at `dir`, saying what is wrong with it.
fn bad(dir: &std::path::Path, reason: impl std::fmt::Display) -> Error {
    Error::Checkpoint(format!("{}: {reason}", dir.display()))
}
