//! Token shards: each data file tokenized once into a shard beside a cache of them, read back
//! with no tokenizer in the loop (`token_shard.rs`). A shard is three files named by the source
//! file's key (its canonical path and how documents are found in it): `KEY.tokens` (ids back to
//! back, u16 when the vocabulary fits, u32 otherwise, little-endian), `KEY.index` (each
//! document's end in ids and in bytes of its text, u64 little-endian each) and `KEY.json` (the
//! [`Manifest`]: source, tokenizer, counts), written last, so a shard is whole or absent. Shards
//! live under `TOKENS_DIR/TOKENIZER-ID/`, and they hold every document of the file in order, so the split,
//! sharding between ranks and positions are those of the text. This file finds and builds them.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::files::DataFile;
use super::source::{DataSource, Origin};
use super::token_shard::{INDEX_ENTRY, Manifest, SHARD_VERSION, Shard, ShardSet};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Documents tokenized in one call while building a shard…
const BUILD_CHUNK_DOCS: usize = 2048;

/// …or fewer, once they hold this many bytes of text.
const BUILD_CHUNK_BYTES: usize = 16 << 20;

/// What a search for a source's shards found.
#[derive(Debug)]
pub enum Lookup {
    /// Every file has a shard, whole and current.
    Found(ShardSet),
    /// Some files have none (or a stale one: the file changed since): how many, of how many.
    Missing {
        /// Files without a current shard.
        missing: usize,
        /// Files of the source.
        files: usize,
    },
}

/// The directory of `tokenizer`'s shards under `tokens_dir`.
fn tokenizer_dir(tokens_dir: &Path, tokenizer: &str) -> PathBuf {
    // The first 16 characters (not bytes: an identity of any text cannot split one), kept to
    // those a directory name may hold everywhere.
    let name: String = tokenizer
        .chars()
        .take(16)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    tokens_dir.join(name)
}

/// The key of `file` as `source` reads it: its canonical path and how documents are found.
fn key(file: &DataFile, source: &DataSource) -> Result<String> {
    let path = file
        .path
        .canonicalize()
        .map_err(|e| Error::io(&file.path, e))?;
    let mut hash = Sha256::new();
    for part in [
        path.to_string_lossy().as_bytes(),
        format!("{:?}", file.format).as_bytes(),
        source.delimiter.as_bytes(),
        source.field.as_bytes(),
        &source.max_document_bytes.to_le_bytes(),
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let mut key = format!("{:x}", hash.finalize());
    key.truncate(16);
    Ok(key)
}

/// What tells whether `path` changed: its size, modification time, status change time and
/// inode.
fn stamp(path: &Path) -> Result<(u64, u128, i128, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let modified = meta
        .modified()
        .map_err(|e| Error::io(path, e))?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let changed = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
    Ok((meta.len(), modified, changed, meta.ino()))
}

/// Temporary files being written, removed when dropped unless kept: a failed or interrupted
/// build leaves nothing behind.
struct Scratch(Vec<PathBuf>);

impl Scratch {
    /// A new temporary file in `dir` for `key` and `ext`, created here and only here.
    fn create(&mut self, dir: &Path, key: &str, ext: &str) -> Result<File> {
        let unique: u64 = rand::random();
        let path = dir.join(format!(
            ".{key}.{ext}.{}-{unique:016x}.tmp",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        self.0.push(path);
        Ok(file)
    }

    /// Moves temporary file `i` to `to`; it is no longer removed.
    fn keep(&mut self, i: usize, to: &Path) -> Result<()> {
        std::fs::rename(&self.0[i], to).map_err(|e| Error::io(to, e))?;
        self.0[i] = PathBuf::new();
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            if !path.as_os_str().is_empty() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The data files of `source`, or an error: only files are tokenized ahead.
fn files_of(source: &DataSource) -> Result<&[DataFile]> {
    match &source.origin {
        Origin::Files(files) => Ok(files),
        Origin::Stories(_) => Err(Error::Data(
            "the built-in stories are generated as they are read: they have no token shards".into(),
        )),
    }
}

impl Shard {
    /// The shard of `file` in `dir`, if it has a whole, current one for `tokenizer`: `None`
    /// when there is none, the file changed since, or it has another layout (stale); an error
    /// when one is there but damaged (truncated, or written for another tokenizer).
    fn find(
        dir: &Path,
        file: &DataFile,
        source: &DataSource,
        tokenizer: &str,
    ) -> Result<Option<Shard>> {
        let key = key(file, source)?;
        let manifest_path = dir.join(format!("{key}.json"));
        let bytes = match std::fs::read(&manifest_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&manifest_path, e)),
        };
        let bad = |why: String| {
            Error::Data(format!(
                "{}: a bad token shard of {}: {why}; `--set dataset.pretokenize=true` builds it \
                 again",
                manifest_path.display(),
                file.path.display()
            ))
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if manifest.version != SHARD_VERSION {
            // Another layout: built again when asked, read as text meanwhile.
            return Ok(None);
        }
        if manifest.tokenizer != tokenizer {
            return Err(bad(format!(
                "it was written with tokenizer {}, and this run's is {tokenizer}",
                manifest.tokenizer
            )));
        }
        if !matches!(manifest.width, 2 | 4) {
            return Err(bad(format!("{} bytes per id", manifest.width)));
        }
        let stamped = (
            manifest.source_bytes,
            manifest.source_modified_ns,
            manifest.source_changed_ns,
            manifest.source_inode,
        );
        if stamped != stamp(&file.path)? {
            // The file changed since: the shard is stale, not damaged.
            return Ok(None);
        }
        let shard = Shard {
            tokens: dir.join(format!("{key}.tokens")),
            index: dir.join(format!("{key}.index")),
            manifest,
        };
        let m = &shard.manifest;
        let size = |count: u64, each: u64, what: &str| {
            count
                .checked_mul(each)
                .ok_or_else(|| bad(format!("{count} {what} cannot be in a file")))
        };
        for (path, expected) in [
            (&shard.tokens, size(m.tokens, u64::from(m.width), "ids")?),
            (&shard.index, size(m.documents, INDEX_ENTRY, "documents")?),
        ] {
            let found = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            if found != expected {
                return Err(bad(format!(
                    "{} holds {found} bytes, and its manifest says {expected} (truncated?)",
                    path.display()
                )));
            }
        }
        Ok(Some(shard))
    }

    /// Tokenizes `file` into `dir` with `tokenizer` (identity `id`): the ids and the index first,
    /// under temporary names, then the manifest; returns the shard.
    fn build<T: Tokenizer + ?Sized>(
        dir: &Path,
        file: &DataFile,
        source: &DataSource,
        tokenizer: &T,
        id: &str,
    ) -> Result<Shard> {
        let key = key(file, source)?;
        let (source_bytes, source_modified_ns, source_changed_ns, source_inode) =
            stamp(&file.path)?;
        let vocab_size = tokenizer.vocab_size() as u64;
        let width: u8 = if vocab_size <= 1 << 16 { 2 } else { 4 };
        let mut scratch = Scratch(Vec::new());
        let buffered = |f: File| BufWriter::with_capacity(1 << 20, f);
        let mut tokens = buffered(scratch.create(dir, &key, "tokens")?);
        let mut index = buffered(scratch.create(dir, &key, "index")?);
        let (tokens_tmp, index_tmp) = (scratch.0[0].clone(), scratch.0[1].clone());
        let mut reader = source.open(file, 0, 0)?;
        let (mut documents, mut total, mut text_total) = (0u64, 0u64, 0u64);
        let mut chunk = Vec::with_capacity(BUILD_CHUNK_DOCS);
        let mut bytes = Vec::new();
        loop {
            chunk.clear();
            let mut text_bytes = 0;
            while chunk.len() < BUILD_CHUNK_DOCS && text_bytes < BUILD_CHUNK_BYTES {
                match reader.next_text()? {
                    Some(doc) => {
                        text_bytes += doc.len();
                        chunk.push(doc);
                    }
                    None => break,
                }
            }
            if chunk.is_empty() {
                break;
            }
            let encoded = tokenizer
                .encode_documents(&chunk)
                .map_err(|e| Error::Tokenizer(format!("{}: {e}", file.path.display())))?;
            for (ids, text) in encoded.into_iter().zip(&chunk) {
                bytes.clear();
                // encode_documents checked every id against the vocabulary.
                for id in ids {
                    match width {
                        2 => bytes.extend_from_slice(&(id as u16).to_le_bytes()),
                        _ => bytes.extend_from_slice(&id.to_le_bytes()),
                    }
                    total += 1;
                }
                tokens
                    .write_all(&bytes)
                    .map_err(|e| Error::io(&tokens_tmp, e))?;
                text_total += text.len() as u64;
                index
                    .write_all(&total.to_le_bytes())
                    .and_then(|()| index.write_all(&text_total.to_le_bytes()))
                    .map_err(|e| Error::io(&index_tmp, e))?;
                documents += 1;
            }
        }
        for (writer, path) in [(tokens, &tokens_tmp), (index, &index_tmp)] {
            let file = writer
                .into_inner()
                .map_err(|e| Error::io(path, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(path, e))?;
        }
        let shard = Shard {
            tokens: dir.join(format!("{key}.tokens")),
            index: dir.join(format!("{key}.index")),
            manifest: Manifest {
                version: SHARD_VERSION,
                source: file.path.clone(),
                source_bytes,
                source_modified_ns,
                source_changed_ns,
                source_inode,
                tokenizer: id.to_string(),
                vocab_size,
                width,
                documents,
                tokens: total,
                text_bytes: text_total,
            },
        };
        scratch.keep(0, &shard.tokens)?;
        scratch.keep(1, &shard.index)?;
        let mut manifest = scratch.create(dir, &key, "json")?;
        let manifest_tmp = scratch.0[2].clone();
        let json = serde_json::to_vec_pretty(&shard.manifest)?;
        manifest
            .write_all(&json)
            .and_then(|()| manifest.sync_all())
            .map_err(|e| Error::io(&manifest_tmp, e))?;
        scratch.keep(2, &dir.join(format!("{key}.json")))?;
        // The renames themselves survive a crash once the directory is synced.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
        Ok(shard)
    }
}

impl ShardSet {
    /// The shards of every file of `source` for the tokenizer `identity` under `tokens_dir`.
    pub fn find(source: &DataSource, tokens_dir: &Path, identity: &str) -> Result<Lookup> {
        let files = files_of(source)?;
        let dir = tokenizer_dir(tokens_dir, identity);
        let mut shards = Vec::with_capacity(files.len());
        for file in files {
            if let Some(shard) = Shard::find(&dir, file, source, identity)? {
                shards.push(shard);
            }
        }
        if shards.len() < files.len() {
            return Ok(Lookup::Missing {
                missing: files.len() - shards.len(),
                files: files.len(),
            });
        }
        Ok(Lookup::Found(ShardSet {
            dir,
            shards: shards.into(),
        }))
    }

    /// Tokenizes every file of `source` that has no current shard under `tokens_dir` with
    /// `tokenizer`, files in parallel, with a progress bar when `progress`; returns them all.
    pub fn build<T: Tokenizer + Sync + ?Sized>(
        source: &DataSource,
        tokens_dir: &Path,
        tokenizer: &T,
        progress: bool,
    ) -> Result<ShardSet> {
        let Some(identity) = tokenizer.identity() else {
            return Err(Error::Tokenizer(format!(
                "{} has no identity (`Tokenizer::identity`), so its shards could not be told \
                 from another tokenizer's",
                std::any::type_name::<T>()
            )));
        };
        let files = files_of(source)?;
        let dir = tokenizer_dir(tokens_dir, &identity);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut todo = Vec::new();
        let mut keys = HashSet::new();
        for (i, file) in files.iter().enumerate() {
            // One build per key: two names of one file (links) are tokenized once.
            if !keys.insert(key(file, source)?) {
                continue;
            }
            match Shard::find(&dir, file, source, &identity) {
                Ok(Some(_)) => {}
                Ok(None) => todo.push(i),
                Err(e) => {
                    tracing::warn!("{e}: tokenizing it again");
                    todo.push(i);
                }
            }
        }
        let bar = if progress && !todo.is_empty() {
            let bar = indicatif::ProgressBar::new(todo.len() as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "tokenizing {bar:40} {pos}/{len} files  {elapsed_precise}  ETA {eta_precise}",
            ) {
                bar.set_style(style);
            }
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let next = AtomicUsize::new(0);
        // Each tokenizer call is parallel already: half the cores' files at a time keeps the
        // cores busy between calls without holding a chunk per core.
        let workers = (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2)
            .clamp(1, todo.len().max(1));
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        loop {
                            let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                                return Ok(());
                            };
                            Shard::build(&dir, &files[i], source, tokenizer, &identity)?;
                            bar.inc(1);
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|panic| Error::thread_panicked("a tokenizing thread", &*panic))?
                })
                .collect()
        });
        bar.finish_and_clear();
        results.into_iter().collect::<Result<()>>()?;
        match Self::find(source, tokens_dir, &identity)? {
            Lookup::Found(set) => Ok(set),
            Lookup::Missing { missing, files } => Err(Error::Data(format!(
                "{missing} of {files} files still have no token shard in {} after tokenizing \
                 (did a file change meanwhile?)",
                dir.display()
            ))),
        }
    }
}
