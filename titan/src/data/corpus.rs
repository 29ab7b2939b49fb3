//! The training and validation sources of a run: a user's data files, or the built-in stories.

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

    /// The run's sources: `training.data` (a `.txt`, `.jsonl` or `.parquet` file, a directory
    /// or a glob) with `training.val_data` or, when that is absent, every 20th document held
    /// out; else enough built-in stories (about 190 tokens each) for the run to see each about
    /// once, 20,000 at least. Files are read with `dataset`'s field and delimiter.
    pub fn for_run(training: &crate::TrainingConfig, dataset: &DatasetConfig) -> Result<Self> {
        let files = |path: &std::path::Path, split| {
            DataSource::files_with(path, split, &dataset.delimiter, &dataset.field)
        };
        let corpus = match (&training.data, &training.val_data) {
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
            (None, _) => {
                let tokens = training.steps as usize * training.batch_size * training.seq_len;
                Self::stories(&StoryConfig {
                    seed: training.seed,
                    num_stories: (tokens / 190).clamp(20_000, 400_000),
                })
            }
        };
        eprintln!(
            "data: train {}; validation {}",
            corpus.train.describe(),
            corpus.val.describe()
        );
        Ok(corpus)
    }
}
