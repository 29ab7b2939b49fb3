//! The data path: sources (text, JSONL and Parquet files, or the built-in stories) streamed
//! as [`Documents`], collated into packed or padded rows of either label convention by a
//! prefetching [`TokenLoader`], and the `Dataset` and `Dataloader` roles.

mod collate;
mod config;
mod corpus;
mod documents;
mod files;
mod jsonl;
mod lines;
mod loader;
mod packed;
pub mod parquet;
mod read_ahead;
mod said;
mod sample;
mod shards;
mod source;
mod stories;
mod text;
mod token_shard;

// The shared batch vocabulary lives in `crate::batch`; data re-exports it for its users.
pub use crate::batch::{
    Batch, HfBatch, HfLabels, IGNORE_INDEX, ShiftedLabels, TitanBatch, TokenIds, upload,
};
pub use collate::{Collator, Convention, HfConvention, Layout, Pending, Rows, TitanConvention};
pub use config::{Batching, DatasetConfig};
pub use corpus::Corpus;
pub use documents::{Documents, DocumentsState, Leftover, Position, SHUFFLE_BUFFER_BYTES};
pub use files::{DataFile, EXTENSIONS, Format, resolve};
pub use loader::{DEFAULT_PREFETCH, LoaderState, TokenLoader};
pub use packed::{PackedLoader, PackedState, pack_documents};
pub use read_ahead::{MAX_CHUNK_BYTES, MAX_CHUNK_DOCS, MIN_CHUNK_BYTES, MIN_CHUNK_DOCS, ReadAhead};
pub use sample::Sample;
pub use shards::Lookup;
pub use source::{DEFAULT_FIELD, DataSource, FileStamp, FilesStamp, HOLDOUT_EVERY, Origin, Split};
pub use stories::{StoryConfig, StoryGenerator};
pub use text::{DEFAULT_DELIMITER, MAX_DOCUMENT_BYTES};
pub use token_shard::{Manifest, SHARD_VERSION, Shard, ShardSet};

use crate::Result;

/// A document as a dataset yields it to the loader: text to tokenize, or ids tokenized ahead
/// (token shards, [`ShardSet`]) with the tokenizer's special tokens, as `encode` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doc {
    /// Text.
    Text(String),
    /// Token ids, from token shards.
    Tokens {
        /// The ids.
        ids: Vec<u32>,
        /// Bytes of the text they were tokenized from.
        text_bytes: usize,
    },
}

impl Doc {
    /// Bytes of text it holds or was tokenized from: what the buffers' byte bounds count, so a
    /// source's token shards fill them exactly as its text does.
    pub fn size(&self) -> usize {
        match self {
            Doc::Text(text) => text.len(),
            Doc::Tokens { text_bytes, .. } => *text_bytes,
        }
    }
}

/// An endless stream of documents (one data-parallel rank's share), whose position saves and
/// restores exactly; a [`TokenLoader`] reads it on a background thread.
pub trait Dataset: Send + 'static {
    /// Its position, for checkpoints.
    type State: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static;
    /// The next document (wrapping into the next epoch when one ends).
    fn next_document(&mut self) -> Result<String>;
    /// The next document as the loader takes it: text by default; a dataset that reads token
    /// shards gives their ids.
    fn next_doc(&mut self) -> Result<Doc> {
        self.next_document().map(Doc::Text)
    }
    /// The current position.
    fn state(&self) -> Self::State;
    /// Moves to a saved position, so the following documents are the ones that came after it.
    fn load_state(&mut self, state: Self::State) -> Result<()>;
    /// Moves to the positions of a run on another number of data-parallel ranks (one state per
    /// old rank, by rank): this rank takes its share of the documents they had left, and no
    /// document is lost or read twice. By default a dataset cannot.
    fn load_resharded(&mut self, states: Vec<Self::State>) -> Result<()> {
        Err(cannot_reshard::<Self>(states.len()))
    }
    /// Completed passes over the data.
    fn epoch(&self) -> u64;
    /// Whether its positions record the data files they point into, and `load_state` refuses
    /// a position into other files (titan's `Documents`; a position an earlier titan saved
    /// without the record is taken with a warning): then the data may move (`--data` names
    /// another path) on resume, since it is the files that must stay. By default not, and a
    /// resume whose checkpoint's configuration names other data is refused.
    fn checks_files(&self) -> bool {
        false
    }
}

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
    /// Moves to the positions of a run on another number of data-parallel ranks (one state per
    /// old rank, by rank), so that together the new ranks serve what the old ones had left,
    /// nothing lost or repeated. By default a dataloader cannot, and such a resume is refused.
    fn load_resharded(&mut self, states: Vec<Self::State>) -> Result<()> {
        Err(cannot_reshard::<Self>(states.len()))
    }
    /// Completed passes over the data.
    fn epoch(&self) -> u64;
    /// Whether its position does not depend on the batch size (it is in documents or rows, not
    /// in batches), so that a resume may change `training.batch_size` with nothing lost or
    /// repeated. By default not, and such a resume is refused.
    fn rebatches(&self) -> bool {
        false
    }
    /// Whether its position does not depend on the row length (it is in documents and their
    /// tokens not yet laid into rows), so that a resume may change `training.seq_len` (a
    /// longer context for the rest of a run) with nothing lost or repeated. By default not, and
    /// such a resume is refused.
    fn reshapes(&self) -> bool {
        false
    }
    /// Whether its positions record the data files they point into, and `load_state` refuses
    /// a position into other files (titan's `TokenLoader`, as its dataset says): then the data
    /// may move (`--data` names another path) on resume, since it is the files that must stay.
    /// By default not, and a resume whose checkpoint's configuration names other data is
    /// refused.
    fn checks_files(&self) -> bool {
        false
    }
}

/// The `rank`-th of every `degree` items, in order: how the work of old ranks is dealt to the
/// new ones on a resume on another number of ranks.
pub(crate) fn deal<T, C: FromIterator<T>>(
    items: impl IntoIterator<Item = T>,
    rank: usize,
    degree: usize,
) -> C {
    items
        .into_iter()
        .skip(rank)
        .step_by(degree.max(1))
        .collect()
}

/// The error of a dataset or dataloader `T` that cannot resume the positions of `old` ranks.
fn cannot_reshard<T: ?Sized>(old: usize) -> crate::Error {
    crate::Error::Data(format!(
        "`{}` cannot resume on another number of data-parallel ranks (the checkpoint holds the \
         positions of {old}): implement `load_resharded`, or resume with {old} rank(s)",
        std::any::type_name::<T>()
    ))
}
