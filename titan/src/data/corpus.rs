//! The training and validation documents of a run: a user's text files, or the built-in stories.

use std::path::Path;

use super::{DEFAULT_DELIMITER, StoryConfig, StoryGenerator, read_documents};
use crate::{Error, Result};

/// Training and validation documents, and where they came from.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Documents to train on.
    pub train: Vec<String>,
    /// Held-apart documents to evaluate on.
    pub val: Vec<String>,
    /// Human-readable origin, for logs.
    pub source: String,
}

/// Fraction of the training source held apart for validation when no validation file is given.
pub const VAL_FRACTION: f64 = 0.05;

impl Corpus {
    /// The built-in stories: `config.num_stories` to train on and 5% more, never trained on,
    /// to validate on.
    pub fn stories(config: &StoryConfig) -> Self {
        let generator = StoryGenerator::new(config.clone());
        let n = config.num_stories as u64;
        let held = ((n as f64 * VAL_FRACTION).ceil() as u64).max(1);
        Self {
            train: generator.stories(0..n).collect(),
            val: generator.stories(n..n + held).collect(),
            source: format!(
                "built-in stories (seed {}, {} train, {} validation)",
                config.seed, n, held
            ),
        }
    }

    /// The run's documents: `training.data` (and `val_data`) when set, else enough built-in
    /// stories (about 190 tokens each) for the run to see each about once, 20,000 at least.
    pub fn for_run(training: &crate::TrainingConfig) -> Result<Self> {
        let corpus = match &training.data {
            Some(path) => Self::from_files(path, training.val_data.as_deref())?,
            None => {
                let tokens = training.steps as usize * training.batch_size * training.seq_len;
                Self::stories(&StoryConfig {
                    seed: training.seed,
                    num_stories: (tokens / 190).clamp(20_000, 400_000),
                })
            }
        };
        eprintln!("data: {}", corpus.source);
        Ok(corpus)
    }

    /// Documents from `train` (split at `<|endoftext|>` lines); validation from `val` or, when
    /// absent, the last 5% of `train`'s documents, which are then not trained on.
    pub fn from_files(train: &Path, val: Option<&Path>) -> Result<Self> {
        let mut docs = read_documents(train, DEFAULT_DELIMITER)?;
        let (val_docs, how) = match val {
            Some(path) => (
                read_documents(path, DEFAULT_DELIMITER)?,
                path.display().to_string(),
            ),
            None => {
                if docs.len() < 2 {
                    return Err(Error::Data(format!(
                        "{}: one document only, so none can be held apart for validation; pass --val-data",
                        train.display()
                    )));
                }
                let held = ((docs.len() as f64 * VAL_FRACTION).ceil() as usize).max(1);
                let val = docs.split_off(docs.len() - held);
                (val, format!("last {held} documents held apart"))
            }
        };
        Ok(Self {
            source: format!(
                "{} ({} train documents; validation: {how})",
                train.display(),
                docs.len()
            ),
            train: docs,
            val: val_docs,
        })
    }
}
