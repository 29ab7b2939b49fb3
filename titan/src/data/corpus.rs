//! The training and validation sources of a run: a user's data files, or the built-in stories.

use std::path::Path;

use super::{DataSource, DatasetConfig, Split, StoryConfig};
use crate::Result;

/// Where a run's training and validation documents come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Documents to train on.
    pub train: DataSource,
    /// Held-apart documents to evaluate on.
    pub val: DataSource,
}

impl Corpus {
    /// The built-in stories: `config.num_stories` of them, every 20th held out for validation.
    pub fn stories(config: &StoryConfig) -> Self {
        Self {
            train: DataSource::stories(config.clone(), Split::Train),
            val: DataSource::stories(config.clone(), Split::Validation),
        }
    }

    /// A run's sources: `data` (a `.txt`, `.jsonl` or `.parquet` file, a directory or a glob)
    /// with `val_data` or, when that is absent, every 20th document held out; without `data`,
    /// the built-in `stories`. Files are read with `dataset`'s field and delimiter.
    pub fn new(
        data: Option<&Path>,
        val_data: Option<&Path>,
        dataset: &DatasetConfig,
        stories: StoryConfig,
    ) -> Result<Self> {
        let files = |path: &Path, split| {
            DataSource::files_with(
                path,
                split,
                &dataset.delimiter,
                &dataset.field,
                dataset.max_document_bytes,
            )
        };
        let corpus = match (data, val_data) {
            (Some(train), Some(val)) => Self {
                train: files(train, Split::All)?,
                val: files(val, Split::All)?,
            },
            (Some(train), None) => {
                let train = files(train, Split::Train)?;
                let val = DataSource {
                    split: Split::Validation,
                    ..train.clone()
                };
                Self { train, val }
            }
            (None, _) => Self::stories(&stories),
        };
        tracing::info!(
            "data: train {}; validation {}",
            corpus.train.describe(),
            corpus.val.describe()
        );
        Ok(corpus)
    }
}
