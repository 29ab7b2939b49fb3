//! A bounded sample of a source's documents to train a tokenizer on, described by where it
//! comes from rather than by its text: files by their absolute paths and sizes, the built-in
//! stories by their seed. The description is the tokenizer's fingerprint, so a tokenizer is
//! reused only for the data and sample that trained it.

use serde_json::{Value, json};

use super::source::{DataSource, HOLDOUT_EVERY, Origin};
use crate::Result;
use crate::tokenizer::TrainingText;

/// The first `documents` documents of a source's split, read only when a tokenizer trains.
#[derive(Debug, Clone)]
pub struct Sample {
    source: DataSource,
    documents: usize,
}

impl DataSource {
    /// The first `n` documents of the split, as text a tokenizer trains on (read only if it
    /// does; see [`DataSource::sample`]).
    pub fn sample_of(&self, n: usize) -> Sample {
        Sample {
            source: self.clone(),
            documents: n,
        }
    }
}

impl TrainingText for Sample {
    fn provenance(&self) -> Value {
        let source = match &self.source.origin {
            Origin::Files(files) => Value::Array(
                files
                    .iter()
                    .map(|f| {
                        let path =
                            std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone());
                        let bytes = std::fs::metadata(&f.path).map(|m| m.len()).ok();
                        json!({"path": path.display().to_string(), "bytes": bytes})
                    })
                    .collect(),
            ),
            // Story `i` depends only on the seed and `i`, so how many a run generates does not
            // change the sample's text beyond its length.
            Origin::Stories(config) => json!({"built_in_stories": {"seed": config.seed}}),
        };
        json!({
            "source": source,
            "split": self.source.split,
            "delimiter": self.source.delimiter,
            "field": self.source.field,
            "max_document_bytes": self.source.max_document_bytes,
            "documents": self.documents,
        })
    }

    fn documents(self) -> Result<Vec<String>> {
        let mut source = self.source;
        // The stories are drawn from as many as the sample needs, however many the run
        // trains on, so the sample is what its seed and size say (every 20th is held out).
        if let Origin::Stories(config) = &mut source.origin {
            let needed = self.documents.saturating_mul(HOLDOUT_EVERY as usize)
                / (HOLDOUT_EVERY as usize - 1)
                + 1;
            config.num_stories = config.num_stories.max(needed);
        }
        source.sample(self.documents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, StoryConfig};

    #[test]
    fn the_stories_sample_is_described_by_seed_and_size_not_by_run_length() {
        let stories = |seed, num_stories| {
            DataSource::stories(StoryConfig { seed, num_stories }, Split::Train).sample_of(100)
        };
        assert_eq!(
            stories(0, 20_000).provenance(),
            stories(0, 400_000).provenance()
        );
        assert_ne!(
            stories(0, 20_000).provenance(),
            stories(1, 20_000).provenance()
        );
        let other_size = DataSource::stories(
            StoryConfig {
                seed: 0,
                num_stories: 20_000,
            },
            Split::Train,
        )
        .sample_of(200);
        assert_ne!(stories(0, 20_000).provenance(), other_size.provenance());
    }

    #[test]
    fn a_stories_sample_is_the_same_text_for_a_short_run_and_a_long_one() -> Result<()> {
        let sample = |num_stories| {
            DataSource::stories(
                StoryConfig {
                    seed: 0,
                    num_stories,
                },
                Split::Train,
            )
            .sample_of(300)
            .documents()
        };
        let (short, long) = (sample(100)?, sample(100_000)?);
        assert_eq!(short.len(), 300);
        assert_eq!(short, long);
        Ok(())
    }

    #[test]
    fn a_file_sample_names_the_file_and_its_size() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("tempdir", e))?;
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one\n").map_err(|e| crate::Error::io(&path, e))?;
        let before = DataSource::files(&path, Split::Train)?
            .sample_of(10)
            .provenance();
        assert!(before.to_string().contains("a.txt"), "{before}");
        std::fs::write(&path, "one, and more\n").map_err(|e| crate::Error::io(&path, e))?;
        let after = DataSource::files(&path, Split::Train)?
            .sample_of(10)
            .provenance();
        assert_ne!(before, after, "a file that changed size is other data");
        Ok(())
    }
}
