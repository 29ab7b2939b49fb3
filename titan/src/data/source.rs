//! What a dataset reads: data files or the built-in stories, which part of them (train,
//! held-out validation or all), and how documents are found in them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{DataFile, Format, resolve};
use super::jsonl::JsonlReader;
use super::parquet::ParquetReader;
use super::text::{DEFAULT_DELIMITER, MAX_DOCUMENT_BYTES, TextReader};
use super::token_shard::{ShardReader, ShardSet};
use super::{Doc, StoryConfig, StoryGenerator};
use crate::{Error, Result};

/// When a source has no separate validation data, every `HOLDOUT_EVERY`-th document of each
/// file is held out for validation and never trained on (indices 19, 39, … of the first file;
/// see [`Split::contains`]).
pub const HOLDOUT_EVERY: u64 = 20;

/// The step between files' phases of the held-out documents: coprime with [`HOLDOUT_EVERY`], so
/// that files shorter than it still hold out about one document in `HOLDOUT_EVERY`.
const HOLDOUT_STAGGER: u64 = 7;

/// Which of a source's documents a dataset yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    /// Every document.
    All,
    /// All but the held-out documents.
    Train,
    /// Only the held-out documents (every [`HOLDOUT_EVERY`]-th of each file).
    Validation,
}

impl Split {
    /// Whether document `index` of unit (file) `unit` belongs to this split. It is a property
    /// of the document, not of who reads it: the same documents are held out whatever the
    /// number of data-parallel ranks, and on a resume on another number.
    pub fn contains(self, unit: usize, index: u64) -> bool {
        let phase = (unit as u64 % HOLDOUT_EVERY) * HOLDOUT_STAGGER;
        let held = (index + phase) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1;
        match self {
            Split::All => true,
            Split::Train => !held,
            Split::Validation => held,
        }
    }
}

/// Where documents come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    /// Data files, read in order.
    Files(Vec<DataFile>),
    /// The built-in story generator: stories `0..num_stories`.
    Stories(StoryConfig),
}

/// A source of documents: where they are, which split, and the delimiter (text files) and
/// field or column (JSONL, Parquet) that hold them. Cheap to clone; reading starts in
/// [`super::Documents`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    /// Where documents come from.
    pub origin: Origin,
    /// Which documents to yield.
    pub split: Split,
    /// Line separating documents in text files.
    pub delimiter: String,
    /// JSONL field or Parquet column holding the text.
    pub field: String,
    /// The bound of a document's size (see [`MAX_DOCUMENT_BYTES`]).
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
    /// The files' token shards, read instead of the files when present ([`Self::with_shards`]).
    #[serde(skip)]
    pub shards: Option<ShardSet>,
}

fn default_max_document_bytes() -> usize {
    MAX_DOCUMENT_BYTES
}

/// The JSONL field or Parquet column read when none is named.
pub const DEFAULT_FIELD: &str = "text";

impl DataSource {
    /// The data files `spec` names (a file, a directory or a glob; see [`resolve`]), checked
    /// now: each opens and has a first document, which reads (JSONL and Parquet files have the
    /// `text` field or column).
    pub fn files(spec: &Path, split: Split) -> Result<Self> {
        Self::files_with(
            spec,
            split,
            DEFAULT_DELIMITER,
            DEFAULT_FIELD,
            MAX_DOCUMENT_BYTES,
        )
    }

    /// [`DataSource::files`] with another delimiter, field or bound of a document's size.
    pub fn files_with(
        spec: &Path,
        split: Split,
        delimiter: &str,
        field: &str,
        max_document_bytes: usize,
    ) -> Result<Self> {
        if max_document_bytes == 0 {
            return Err(Error::config(
                "dataset.max_document_bytes",
                max_document_bytes,
                "must be at least 1",
            ));
        }
        check_delimiter("dataset.delimiter", delimiter)?;
        let source = Self {
            origin: Origin::Files(resolve(spec)?),
            split,
            delimiter: delimiter.to_string(),
            field: field.to_string(),
            max_document_bytes,
            shards: None,
        };
        if let Origin::Files(files) = &source.origin {
            for file in files {
                // Its first record is read now (UTF-8, the JSONL field, the Parquet column), so
                // a bad or empty file stops the run before step 1, not when a pass reaches it.
                if source.open(file, 0, 0)?.next_document()?.is_none() {
                    return Err(Error::Data(format!(
                        "{}: no documents (the file is empty or holds only blank documents)",
                        file.path.display()
                    )));
                }
            }
        }
        Ok(source)
    }

    /// The built-in stories.
    pub fn stories(config: StoryConfig, split: Split) -> Self {
        Self {
            origin: Origin::Stories(config),
            split,
            delimiter: DEFAULT_DELIMITER.to_string(),
            field: DEFAULT_FIELD.to_string(),
            max_document_bytes: MAX_DOCUMENT_BYTES,
            shards: None,
        }
    }

    /// This source read from `shards` (its files' token shards, [`ShardSet::find`]): the same
    /// documents in the same order, already tokenized.
    pub fn with_shards(self, shards: ShardSet) -> Self {
        Self {
            shards: Some(shards),
            ..self
        }
    }

    /// Human-readable description, for logs.
    pub fn describe(&self) -> String {
        let what = match &self.origin {
            Origin::Files(files) if files.len() == 1 => files[0].path.display().to_string(),
            Origin::Files(files) => format!(
                "{} files ({} … {})",
                files.len(),
                files[0].path.display(),
                files[files.len() - 1].path.display()
            ),
            Origin::Stories(c) => {
                format!("built-in stories (seed {}, {})", c.seed, c.num_stories)
            }
        };
        let split = match self.split {
            Split::All => String::new(),
            Split::Train => format!(", all but every {HOLDOUT_EVERY}th document of each file"),
            Split::Validation => format!(", every {HOLDOUT_EVERY}th document of each file"),
        };
        let shards = self.shards.as_ref().map_or_else(String::new, |s| {
            format!(" (token shards in {})", s.dir().display())
        });
        format!("{what}{split}{shards}")
    }

    /// What to check when a whole pass finds no documents for a rank that reads every
    /// `stride`-th document: how files are split into documents, and the split's own rule.
    pub fn why_empty(&self, stride: usize) -> String {
        let mut why = Vec::new();
        if self.split == Split::Validation {
            why.push(format!(
                "the held-out split keeps one document in {HOLDOUT_EVERY} of each file, so \
                 files of fewer than {HOLDOUT_EVERY} documents may give it none: give --val-data"
            ));
        }
        if stride > 1 {
            why.push(format!(
                "this rank reads one document in {stride}, so data with fewer documents than \
                 ranks gives some none"
            ));
        }
        if let Origin::Files(files) = &self.origin
            && files.iter().any(|f| f.format == Format::Text)
        {
            why.push(format!(
                "a text file is one document unless lines equal to `{}` (dataset.delimiter) \
                 separate its documents",
                self.delimiter
            ));
        }
        why.join("; ")
    }

    /// Number of units the source is read in: files, or 1 for the stories.
    pub fn num_units(&self) -> usize {
        match &self.origin {
            Origin::Files(files) => files.len(),
            Origin::Stories(_) => 1,
        }
    }

    /// Each unit's size in bytes (the built-in stories are one unit, of size 0): how whole
    /// units would share out between ranks.
    pub fn unit_bytes(&self) -> Result<Vec<u64>> {
        let Origin::Files(files) = &self.origin else {
            return Ok(vec![0]);
        };
        files
            .iter()
            .map(|f| {
                std::fs::metadata(&f.path)
                    .map(|meta| meta.len())
                    .map_err(|e| Error::io(&f.path, e))
            })
            .collect()
    }

    /// Each unit's size in bytes of text, to share whole units between ranks by, from its size
    /// on disk ([`DataSource::unit_bytes`]): a compressed file's text size where the file records
    /// it ([`super::files::Compression::text_bytes`]), else the size on disk.
    pub fn unit_text_bytes(&self, on_disk: Vec<u64>) -> Result<Vec<u64>> {
        let Origin::Files(files) = &self.origin else {
            return Ok(on_disk);
        };
        files
            .iter()
            .zip(on_disk)
            .map(|(f, bytes)| super::files::Compression::of(&f.path).text_bytes(&f.path, bytes))
            .collect()
    }

    /// The data files' names (relative to the directory that holds them all, so the data may
    /// move) with their sizes as [`DataSource::unit_bytes`] read them (`None` for the built-in
    /// stories): what a saved position into the files is checked against on resume.
    pub fn file_stamps(&self, sizes: &[u64]) -> Option<FilesStamp> {
        let Origin::Files(files) = &self.origin else {
            return None;
        };
        let stamp = |paths: Vec<PathBuf>| {
            paths
                .into_iter()
                .zip(sizes)
                .map(|(path, &bytes)| FileStamp { path, bytes })
                .collect()
        };
        let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        let mut stamps = FilesStamp::of(stamp(super::files::relative_names(&paths)));
        // An earlier titan stamped full paths: a position it saved is checked against those.
        stamps.full_paths_digest =
            FilesStamp::of(stamp(files.iter().map(|f| f.path.clone()).collect())).digest;
        Some(stamps)
    }

    /// The first `n` documents of the split in source order (fewer when the source is shorter):
    /// a bounded sample, e.g. to train a tokenizer on.
    pub fn sample(&self, n: usize) -> Result<Vec<String>> {
        let mut docs = Vec::new();
        for unit in 0..self.num_units() {
            let mut reader = self.open_text_unit(unit, 0, 0)?;
            let mut index = 0u64;
            while docs.len() < n {
                let Some(doc) = reader.next_text()? else {
                    break;
                };
                if self.split.contains(unit, index) {
                    docs.push(doc);
                }
                index += 1;
            }
        }
        Ok(docs)
    }

    /// Opens unit `unit` at a position a reader reported: its token shard when the source has
    /// them, the file otherwise.
    pub(crate) fn open_unit(&self, unit: usize, offset: u64, record: u64) -> Result<Reader> {
        if let Some(shards) = &self.shards {
            return Ok(Reader::Shard(ShardReader::open(
                shards.shard(unit)?,
                offset,
            )?));
        }
        self.open_text_unit(unit, offset, record)
    }

    /// Opens unit `unit`'s text at a position a text reader reported.
    fn open_text_unit(&self, unit: usize, offset: u64, record: u64) -> Result<Reader> {
        match &self.origin {
            Origin::Files(files) => {
                let file = files.get(unit).ok_or_else(|| {
                    Error::Data(format!(
                        "position names file {unit}, but the source has {} files",
                        files.len()
                    ))
                })?;
                self.open(file, offset, record)
            }
            Origin::Stories(config) => Ok(Reader::Stories {
                generator: StoryGenerator::new(config.clone()),
                next: record,
            }),
        }
    }

    /// Opens `file`'s text at a position a text reader reported.
    pub(crate) fn open(&self, file: &DataFile, offset: u64, record: u64) -> Result<Reader> {
        Ok(match file.format {
            Format::Text => Reader::Text(TextReader::open(
                &file.path,
                &self.delimiter,
                (offset, record),
                self.max_document_bytes,
            )?),
            Format::Jsonl => Reader::Jsonl(JsonlReader::open(
                &file.path,
                &self.field,
                offset,
                record,
                self.max_document_bytes,
            )?),
            Format::Parquet => Reader::Parquet(Box::new(ParquetReader::open(
                &file.path,
                &self.field,
                offset,
                record,
                self.max_document_bytes,
            )?)),
        })
    }

    /// The name of unit `unit`, for errors.
    pub(crate) fn unit_name(&self, unit: usize) -> String {
        match &self.origin {
            Origin::Files(files) => files
                .get(unit)
                .map(|f| f.path.display().to_string())
                .unwrap_or_default(),
            Origin::Stories(_) => "built-in stories".to_string(),
        }
    }
}

/// A data file as a saved position found it: positions are offsets into these files, so a
/// resume refuses files added, removed, renamed or resized since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Its path relative to the directory that holds all the source's files (its full path in
    /// positions an earlier titan saved).
    pub path: std::path::PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A source's data files as a saved position found them: their number, total size and a hash
/// of every path and size, with the list itself when it is short (up to
/// [`FilesStamp::LISTED`] files; every rank's position carries it, so a corpus of thousands of
/// files is not written once per rank and checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesStamp {
    /// Number of files.
    pub count: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// SHA-256 of each path and size, in order.
    pub digest: String,
    /// The files, when there are at most [`FilesStamp::LISTED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<FileStamp>>,
    /// The digest as an earlier titan took it, of full paths (not saved): a position it saved
    /// still fits the files where they were.
    #[serde(skip)]
    pub full_paths_digest: String,
}

impl PartialEq for FilesStamp {
    fn eq(&self, other: &Self) -> bool {
        (self.count, self.bytes, &self.digest, &self.list)
            == (other.count, other.bytes, &other.digest, &other.list)
    }
}

impl Eq for FilesStamp {}

impl FilesStamp {
    /// The most files listed one by one.
    pub const LISTED: usize = 64;

    /// The stamp of `files`, in order.
    pub fn of(files: Vec<FileStamp>) -> Self {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for f in &files {
            hash.update(f.path.to_string_lossy().as_bytes());
            hash.update([0]);
            hash.update(f.bytes.to_le_bytes());
        }
        Self {
            count: files.len(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            digest: format!("{:x}", hash.finalize()),
            list: (files.len() <= Self::LISTED).then_some(files),
            full_paths_digest: String::new(),
        }
    }

    /// How `now` differs from `self`, in words (the first file that differs when both are
    /// listed); `None` when they are the same files.
    pub fn changed(&self, now: &FilesStamp) -> Option<String> {
        if self.digest == now.digest || self.digest == now.full_paths_digest {
            return None;
        }
        if let (Some(was), Some(is)) = (&self.list, &now.list) {
            // A list an earlier titan saved holds the paths as given (`data/web/a.txt`): the
            // same files, moved, have the same names under the directory holding them all.
            let paths: Vec<&Path> = was.iter().map(|f| f.path.as_path()).collect();
            let names = super::files::relative_names(&paths);
            if names.len() == is.len()
                && names
                    .iter()
                    .zip(was)
                    .zip(is)
                    .all(|((name, was), is)| *name == is.path && was.bytes == is.bytes)
            {
                return None;
            }
            for (i, (was, is)) in was.iter().zip(is).enumerate() {
                if was != is {
                    return Some(format!(
                        "file {i} was {} ({} bytes), now {} ({} bytes)",
                        was.path.display(),
                        was.bytes,
                        is.path.display(),
                        is.bytes
                    ));
                }
            }
            let (more, extra) = if was.len() > is.len() {
                ("fewer", &was[is.len()])
            } else {
                ("more", &is[was.len()])
            };
            return Some(format!(
                "{} files then, {} now ({more}: {})",
                was.len(),
                is.len(),
                extra.path.display()
            ));
        }
        Some(format!(
            "{} files of {} bytes then, {} files of {} bytes now (or a path or size differs)",
            self.count, self.bytes, now.count, now.bytes
        ))
    }
}

/// Reads one unit of a source, document by document, and reports where it is.
#[derive(Debug)]
pub(crate) enum Reader {
    Text(TextReader),
    Jsonl(JsonlReader),
    Parquet(Box<ParquetReader>),
    Shard(ShardReader),
    Stories {
        generator: StoryGenerator,
        next: u64,
    },
}

impl Reader {
    /// The next document of the unit, `None` at its end.
    pub(crate) fn next_document(&mut self) -> Result<Option<Doc>> {
        match self {
            Reader::Shard(r) => Ok(r
                .next_document()?
                .map(|(ids, text_bytes)| Doc::Tokens { ids, text_bytes })),
            _ => Ok(self.next_text()?.map(Doc::Text)),
        }
    }

    /// The next document's text, `None` at the unit's end; a token shard is an error.
    pub(crate) fn next_text(&mut self) -> Result<Option<String>> {
        match self {
            Reader::Text(r) => r.next_document(),
            Reader::Jsonl(r) => r.next_document(),
            Reader::Parquet(r) => r.next_document(),
            Reader::Shard(_) => Err(Error::Data(
                "a token shard holds ids, not text: read the source's files".into(),
            )),
            Reader::Stories { generator, next } => {
                if *next >= generator.len() as u64 {
                    return Ok(None);
                }
                *next += 1;
                Ok(Some(generator.story(*next - 1)))
            }
        }
    }

    /// `(offset, record)` of the next document: byte offset and line (JSONL), byte offset
    /// (text), row group and row (Parquet), story index (stories).
    pub(crate) fn position(&self) -> (u64, u64) {
        match self {
            Reader::Text(r) => r.position(),
            Reader::Jsonl(r) => r.position(),
            Reader::Parquet(r) => r.position(),
            Reader::Shard(r) => r.position(),
            Reader::Stories { next, .. } => (0, *next),
        }
    }
}

/// Refuses a delimiter that could never separate documents: lines are compared trimmed, so one
/// that is blank, spans lines or has outer spaces would never match (or match every blank
/// line), silently making each file one document cut by size. `key` names the setting.
pub(crate) fn check_delimiter(key: &str, delimiter: &str) -> Result<()> {
    if delimiter.trim().is_empty() || delimiter.contains(['\n', '\r']) {
        return Err(Error::config(
            key,
            format!("{delimiter:?}"),
            "must be one line with text on it (a line equal to it separates documents)",
        ));
    }
    if delimiter.trim() != delimiter {
        return Err(Error::config(
            key,
            format!("{delimiter:?}"),
            format!(
                "lines are compared without their outer spaces, so it would never match; \
                 write {:?}",
                delimiter.trim()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize, bytes: u64) -> Vec<FileStamp> {
        (0..n)
            .map(|i| FileStamp {
                path: format!("shard-{i:05}.parquet").into(),
                bytes,
            })
            .collect()
    }

    /// A long list is kept as a hash and totals only; a change is still found and said.
    #[test]
    fn a_stamp_of_many_files_is_short_and_still_tells_a_change() {
        let few = FilesStamp::of(files(3, 10));
        assert_eq!(few.list.as_ref().map(Vec::len), Some(3));
        assert_eq!(few.changed(&FilesStamp::of(files(3, 10))), None);
        let grown = few
            .changed(&FilesStamp::of(files(3, 11)))
            .unwrap_or_default();
        assert!(
            grown.contains("file 0 was shard-00000.parquet (10 bytes)"),
            "{grown}"
        );
        let many = FilesStamp::of(files(1000, 10));
        assert_eq!(
            (many.list.as_ref(), many.count, many.bytes),
            (None, 1000, 10_000)
        );
        assert_eq!(many.changed(&FilesStamp::of(files(1000, 10))), None);
        let mut renamed = files(1000, 10);
        renamed[500].path = "other.parquet".into();
        let what = many.changed(&FilesStamp::of(renamed)).unwrap_or_default();
        assert!(what.contains("1000 files of 10000 bytes then"), "{what}");
    }

    #[test]
    fn the_same_files_moved_elsewhere_keep_their_stamp() -> Result<()> {
        let (a, b) = (tempfile::tempdir(), tempfile::tempdir());
        let (a, b) = (
            a.map_err(|e| Error::io("tempdir", e))?,
            b.map_err(|e| Error::io("tempdir", e))?,
        );
        for dir in [a.path(), b.path()] {
            std::fs::create_dir_all(dir.join("web/sub")).map_err(|e| Error::io(dir, e))?;
            std::fs::write(dir.join("web/one.txt"), "x\n").map_err(|e| Error::io(dir, e))?;
            std::fs::write(dir.join("web/sub/two.txt"), "yy\n").map_err(|e| Error::io(dir, e))?;
        }
        let stamp = |dir: &Path| -> Result<FilesStamp> {
            let source = DataSource::files(&dir.join("web"), Split::Train)?;
            let sizes = source.unit_bytes()?;
            Ok(source.file_stamps(&sizes).expect("files"))
        };
        let (here, moved) = (stamp(a.path())?, stamp(b.path())?);
        assert_eq!(moved.changed(&here), None);
        let names: Vec<String> = (here.list.iter().flatten())
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(names, ["one.txt", "sub/two.txt"]);
        // A position an earlier titan saved, stamped with full paths, fits the files where
        // they were, and elsewhere.
        let full = |dir: &Path| {
            FilesStamp::of(vec![
                FileStamp {
                    path: dir.join("web/one.txt"),
                    bytes: 2,
                },
                FileStamp {
                    path: dir.join("web/sub/two.txt"),
                    bytes: 3,
                },
            ])
        };
        assert_eq!(full(a.path()).changed(&here), None);
        // Listed (64 files or fewer), they fit the same files moved too.
        assert_eq!(full(a.path()).changed(&moved), None);
        let mut grown = full(a.path());
        if let Some(list) = grown.list.as_mut() {
            list[1].bytes += 1;
        }
        grown.digest = String::new();
        assert!(grown.changed(&moved).is_some());
        // A file renamed is still a change.
        std::fs::rename(b.path().join("web/one.txt"), b.path().join("web/uno.txt"))
            .map_err(|e| Error::io("rename", e))?;
        let what = here.changed(&stamp(b.path())?).unwrap_or_default();
        assert!(
            what.contains("was one.txt (2 bytes), now sub/two.txt"),
            "{what}"
        );
        Ok(())
    }
}
