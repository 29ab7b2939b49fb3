//! A bounded sample of a source's documents to train a tokenizer on, described by where it
//! comes from rather than by its text: files by their names (relative to the directory that
//! holds them all, so the data may move) and sizes, the built-in stories by their seed. The description is the tokenizer's fingerprint, so a tokenizer is
//! reused only for the data and sample that trained it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::files::relative_names;
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
            Origin::Files(files) => {
                let paths: Vec<PathBuf> = files
                    .iter()
                    .map(|f| std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone()))
                    .collect();
                Value::Array(
                    files
                        .iter()
                        .zip(named(&paths))
                        .map(|(f, name)| {
                            let bytes = std::fs::metadata(&f.path).map(|m| m.len()).ok();
                            json!({"path": name, "bytes": bytes})
                        })
                        .collect(),
                )
            }
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

    /// An earlier titan named the files by their full (canonical) paths: those become names
    /// as this one takes them, so its tokenizer fits the same files, moved or not.
    fn upgrade_provenance(&self, mut saved: Value) -> Value {
        if let Some(Value::Array(files)) = saved.get_mut("source") {
            let full: Vec<PathBuf> = files
                .iter()
                .filter_map(|f| f.get("path")?.as_str().map(PathBuf::from))
                .collect();
            if full.len() == files.len() && full.iter().all(|p| p.is_absolute()) {
                for (file, name) in files.iter_mut().zip(named(&full)) {
                    file["path"] = Value::String(name);
                }
            }
        }
        saved
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

/// Each path's name relative to the directory that holds them all.
fn named(paths: &[PathBuf]) -> Vec<String> {
    let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    relative_names(&paths)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, StoryConfig};

    #[test]
    fn a_files_sample_is_described_the_same_wherever_the_data_is() -> Result<()> {
        let (a, b) = (tempfile::tempdir(), tempfile::tempdir());
        let (a, b) = (
            a.map_err(|e| crate::Error::io("tempdir", e))?,
            b.map_err(|e| crate::Error::io("tempdir", e))?,
        );
        for dir in [a.path(), b.path()] {
            let io = |e| crate::Error::io(dir, e);
            std::fs::create_dir_all(dir.join("web/sub")).map_err(io)?;
            std::fs::write(dir.join("web/one.txt"), "a story\n").map_err(io)?;
            std::fs::write(dir.join("web/sub/two.txt"), "another\n").map_err(io)?;
        }
        let sample = |dir: &Path| -> Result<Sample> {
            Ok(DataSource::files(&dir.join("web"), Split::Train)?.sample_of(10))
        };
        let (here, moved) = (
            sample(a.path())?.provenance(),
            sample(b.path())?.provenance(),
        );
        assert_eq!(here, moved);
        assert_eq!(here["source"][1]["path"], "sub/two.txt");
        // What an earlier titan saved, full paths: taken as the same files.
        let mut old = here.clone();
        for (i, name) in ["web/one.txt", "web/sub/two.txt"].iter().enumerate() {
            let full = std::fs::canonicalize(a.path().join(name))
                .map_err(|e| crate::Error::io(name, e))?;
            old["source"][i]["path"] = Value::String(full.display().to_string());
        }
        assert_ne!(old, here);
        assert_eq!(sample(b.path())?.upgrade_provenance(old), here);
        // Another size is another file.
        std::fs::write(b.path().join("web/one.txt"), "a longer story\n")
            .map_err(|e| crate::Error::io("one.txt", e))?;
        assert_ne!(sample(b.path())?.provenance(), here);
        Ok(())
    }

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
