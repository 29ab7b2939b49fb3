//! `DatasetConfig`: how an experiment reads its data files and lays documents into batches.

use serde::{Deserialize, Serialize};

use super::{
    Convention, DEFAULT_DELIMITER, DEFAULT_FIELD, DEFAULT_PREFETCH, DataSource, Documents, Layout,
    MAX_DOCUMENT_BYTES, SHUFFLE_BUFFER_BYTES, TokenLoader,
};
use crate::Result;
use crate::parallel_dims::DataParallel;
use crate::tokenizer::Tokenizer;

/// What a split's loader makes: batches of `batch_size` rows of `seq_len` tokens, documents
/// shuffled with `seed` (training only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Rows per batch.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Seed of the training split's shuffle.
    pub seed: u64,
}

/// Settings of the data path (the `dataset` section of an experiment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetConfig {
    /// JSONL field or Parquet column holding the text.
    pub field: String,
    /// Line separating documents in text files.
    pub delimiter: String,
    /// Documents in the training shuffle buffer (0: read in order).
    pub shuffle_buffer: usize,
    /// Bytes of text the shuffle buffer holds at most (it always holds one document).
    pub shuffle_buffer_bytes: usize,
    /// `packed` (documents joined with EOS, cut into full rows) or `padded` (one per row).
    pub layout: Layout,
    /// Batches prepared ahead of training on the data thread.
    pub prefetch: usize,
    /// Documents the tokenizer is trained on when it is not cached yet.
    pub tokenizer_sample: usize,
    /// The bound of one document's size in bytes: a longer text document is cut into several,
    /// a longer JSONL line or Parquet value is an error naming file and place.
    pub max_document_bytes: usize,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            field: DEFAULT_FIELD.into(),
            delimiter: DEFAULT_DELIMITER.into(),
            shuffle_buffer: 1024,
            shuffle_buffer_bytes: SHUFFLE_BUFFER_BYTES,
            layout: Layout::Packed,
            prefetch: DEFAULT_PREFETCH,
            tokenizer_sample: 20_000,
            max_document_bytes: MAX_DOCUMENT_BYTES,
        }
    }
}

impl DatasetConfig {
    /// The training loader over `source`: this rank's documents, shuffled in a buffer of
    /// `shuffle_buffer`, tokenized and laid out (`layout`) `prefetch` batches ahead on a thread
    /// of its own.
    pub fn train_loader<T, C>(
        &self,
        dims: &impl DataParallel,
        source: &DataSource,
        tokenizer: &T,
        batching: Batching,
    ) -> Result<TokenLoader<Documents, T, C>>
    where
        T: Tokenizer + Clone + Send + Sync + 'static,
        C: Convention,
    {
        let docs = Documents::new(dims, source.clone(), self.shuffle_buffer, batching.seed)?
            .with_shuffle_bytes(self.shuffle_buffer_bytes)?;
        self.loader(dims, docs, tokenizer, batching)?
            .with_prefetch(self.prefetch)
    }

    /// The validation loader over `source`: this rank's documents in order, so every
    /// evaluation scores the same batches.
    pub fn val_loader<T, C>(
        &self,
        dims: &impl DataParallel,
        source: &DataSource,
        tokenizer: &T,
        batching: Batching,
    ) -> Result<TokenLoader<Documents, T, C>>
    where
        T: Tokenizer + Clone + Send + Sync + 'static,
        C: Convention,
    {
        let docs = Documents::new(dims, source.clone(), 0, batching.seed)?;
        self.loader(dims, docs, tokenizer, batching)
    }

    fn loader<T, C>(
        &self,
        dims: &impl DataParallel,
        docs: Documents,
        tokenizer: &T,
        batching: Batching,
    ) -> Result<TokenLoader<Documents, T, C>>
    where
        T: Tokenizer + Clone + Send + Sync + 'static,
        C: Convention,
    {
        TokenLoader::new(
            dims,
            docs,
            tokenizer.clone(),
            self.layout,
            batching.seq_len,
            batching.batch_size,
        )
    }
}
