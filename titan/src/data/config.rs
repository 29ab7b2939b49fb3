//! `DatasetConfig`: how an experiment reads its data files and lays documents into batches.

use serde::{Deserialize, Serialize};

use super::{DEFAULT_DELIMITER, DEFAULT_FIELD, DEFAULT_PREFETCH, Layout};

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
    /// `packed` (documents joined with EOS, cut into full rows) or `padded` (one per row).
    pub layout: Layout,
    /// Batches prepared ahead of training on the data thread.
    pub prefetch: usize,
    /// Documents the tokenizer is trained on when it is not cached yet.
    pub tokenizer_sample: usize,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            field: DEFAULT_FIELD.into(),
            delimiter: DEFAULT_DELIMITER.into(),
            shuffle_buffer: 1024,
            layout: Layout::Packed,
            prefetch: DEFAULT_PREFETCH,
            tokenizer_sample: 20_000,
        }
    }
}
