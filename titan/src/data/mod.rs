//! The data path: the built-in story corpus, text files, packing, batches and the
//! `Dataloader` role.

mod batch;
mod corpus;
mod packed;
mod stories;
mod text;

pub use batch::{Batch, HfBatch, HfLabels, IGNORE_INDEX, ShiftedLabels, TokenIds};
pub use corpus::{Corpus, VAL_FRACTION};
pub use packed::{PackedLoader, PackedState, pack_documents};
pub use stories::{StoryConfig, StoryGenerator};
pub use text::{DEFAULT_DELIMITER, read_documents, split_documents};

use crate::Result;

/// Yields batches forever, counting epochs; its position saves and restores exactly.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dataloader",
    label = "a dataloader goes here",
    note = "a dataloader implements `titan::Dataloader`: it yields batches (`type Batch`); see `titan::data`"
)]
pub trait Dataloader {
    /// The batches it yields.
    type Batch: Batch;
    /// Its position, for checkpoints.
    type State: serde::Serialize + serde::de::DeserializeOwned;
    /// The next batch (wrapping into the next epoch when one ends).
    fn next_batch(&mut self) -> Result<Self::Batch>;
    /// The current position.
    fn state(&self) -> Self::State;
    /// Moves to a saved position, so the following batches are the ones that came after it.
    fn load_state(&mut self, state: Self::State) -> Result<()>;
    /// Completed passes over the data.
    fn epoch(&self) -> u64;
}
