//! The training and validation sources of a run: a user's data files, or the built-in stories.

use std::path::Path;

use super::{DataSource, DatasetConfig, Origin, Split, StoryConfig};
use crate::{Error, Result};

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

    /// A run's sources: `data` (a `.txt`, `.jsonl`, either also compressed, or `.parquet` file,
    /// a directory or a glob) with `val_data` or, when that is absent, every 20th document held
    /// out; without `data`,
    /// the built-in `stories`. Files are read with `dataset`'s field and delimiter. `val_data`
    /// without `data`, or a file in both, is an error naming it.
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
            (Some(train), Some(val)) => {
                let corpus = Self {
                    train: files(train, Split::All)?,
                    val: files(val, Split::All)?,
                };
                corpus.check_apart()?;
                corpus
            }
            (Some(train), None) => {
                let train = files(train, Split::Train)?;
                let val = DataSource {
                    split: Split::Validation,
                    ..train.clone()
                };
                Self { train, val }
            }
            (None, Some(val)) => {
                return Err(Error::config(
                    "training.val_data",
                    val.display(),
                    "needs training.data (--data) beside it: the built-in stories hold out \
                     their own validation stories, so this file would be ignored",
                ));
            }
            (None, None) => Self::stories(&stories),
        };
        tracing::info!(
            "data: train {}; validation {}",
            corpus.train.describe(),
            corpus.val.describe()
        );
        Ok(corpus)
    }

    /// Refuses a file that is both trained on and evaluated on (the same file under two names
    /// included): validation on training data would read as a model that generalises.
    fn check_apart(&self) -> Result<()> {
        let (Origin::Files(train), Origin::Files(val)) = (&self.train.origin, &self.val.origin)
        else {
            return Ok(());
        };
        let identity = |path: &Path| std::fs::canonicalize(path).map_err(|e| Error::io(path, e));
        let mut trained = std::collections::HashMap::new();
        for file in train {
            trained.insert(identity(&file.path)?, &file.path);
        }
        for file in val {
            if let Some(train) = trained.get(&identity(&file.path)?) {
                return Err(Error::Data(format!(
                    "{} is validation data (--val-data) and also training data (--data, as {}): \
                     the validation loss would be measured on trained documents; give files \
                     apart, or leave --val-data out to hold out every 20th document",
                    file.path.display(),
                    train.display()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(data: Option<&Path>, val: Option<&Path>) -> Result<Corpus> {
        Corpus::new(data, val, &DatasetConfig::default(), StoryConfig::default())
    }

    #[test]
    fn validation_data_needs_training_data_and_files_apart() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let write = |name: &str| -> Result<std::path::PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, "A fox ran.\n<|endoftext|>\nA hen sat.\n")
                .map_err(|e| Error::io(&path, e))?;
            Ok(path)
        };
        let (train, val) = (write("train.txt")?, write("val.txt")?);
        assert!(corpus(Some(&train), Some(&val)).is_ok());
        let err = corpus(None, Some(&val))
            .expect_err("val without data")
            .to_string();
        assert!(err.contains("val.txt") && err.contains("--data"), "{err}");
        // The same file, by a second name: the directory holding it.
        let err = corpus(Some(dir.path()), Some(&val))
            .expect_err("val inside the training directory")
            .to_string();
        assert!(
            err.contains("val.txt") && err.contains("also training data"),
            "{err}"
        );
        Ok(())
    }
}
