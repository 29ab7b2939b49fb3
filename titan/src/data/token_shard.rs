//! Token shards as they are read: a shard's [`Manifest`], the checked [`Shard`] of one data
//! file and a source's [`ShardSet`], and `ShardReader`, which yields a shard's documents as ids.
//! Finding and building them is `shards.rs`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The version of shards this titan writes and reads: their layout, and how text becomes ids
/// (3: a byte-order mark is not text, and a special token spelt in a document is its text).
pub const SHARD_VERSION: u32 = 3;

/// Index entries read at once.
const INDEX_BLOCK: u64 = 4096;

/// Bytes of one index entry: a document's end in ids, then in bytes of text (u64 each).
pub(crate) const INDEX_ENTRY: u64 = 16;

/// What a shard holds, written last (`KEY.json`): whole shards only, and enough to tell a stale
/// or foreign one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SHARD_VERSION`] of the titan that wrote it.
    pub version: u32,
    /// The source file.
    pub source: PathBuf,
    /// Its size in bytes when it was tokenized.
    pub source_bytes: u64,
    /// Its modification time (nanoseconds since the Unix epoch) when it was tokenized.
    pub source_modified_ns: u128,
    /// Its status change time (nanoseconds since the Unix epoch) when it was tokenized: a copy
    /// that keeps the modification time still changes it.
    pub source_changed_ns: i128,
    /// Its inode when it was tokenized.
    pub source_inode: u64,
    /// The tokenizer's identity ([`Tokenizer::identity`]).
    pub tokenizer: String,
    /// The tokenizer's vocabulary: every id is below it.
    pub vocab_size: u64,
    /// Bytes per id in `KEY.tokens`: 2 or 4.
    pub width: u8,
    /// Documents in the shard.
    pub documents: u64,
    /// Ids in the shard.
    pub tokens: u64,
    /// Bytes of text its documents held (layout 2 on; the shuffle buffer's byte bound counts a
    /// document's text, so shards fill it as the text does).
    #[serde(default)]
    pub text_bytes: u64,
}

/// One source file's shard, checked against its manifest and sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    pub(crate) tokens: PathBuf,
    pub(crate) index: PathBuf,
    pub(crate) manifest: Manifest,
}

/// The shards of every file of a source, for one tokenizer: one per unit, in the source's
/// order.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSet {
    pub(crate) dir: PathBuf,
    pub(crate) shards: Arc<[Shard]>,
}

impl Shard {
    /// The file's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl ShardSet {
    /// Where the shards are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ids in all shards.
    pub fn tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.manifest.tokens).sum()
    }

    /// The shard of unit `unit`.
    pub(crate) fn shard(&self, unit: usize) -> Result<&Shard> {
        self.shards.get(unit).ok_or_else(|| {
            Error::Data(format!(
                "position names file {unit}, but the source has {} token shards",
                self.shards.len()
            ))
        })
    }
}

/// Reads one shard document by document from document `next`: two positioned reads per
/// document (ids, and a block of the index now and then), nothing held beyond a block. Not a
/// memory map: a shard truncated or replaced while a run reads it is an error naming it here,
/// where a map would end the process with SIGBUS; the page cache serves both alike.
#[derive(Debug)]
pub(crate) struct ShardReader {
    tokens: File,
    index: File,
    shard: Shard,
    next: u64,
    block_start: u64,
    block: Vec<(u64, u64)>,
}

impl ShardReader {
    /// `shard` from document `next`.
    pub(crate) fn open(shard: &Shard, next: u64) -> Result<Self> {
        let open = |path: &Path| File::open(path).map_err(|e| Error::io(path, e));
        if next > shard.manifest.documents {
            return Err(Error::Data(format!(
                "position names document {next} of {}, which holds {}",
                shard.tokens.display(),
                shard.manifest.documents
            )));
        }
        Ok(Self {
            tokens: open(&shard.tokens)?,
            index: open(&shard.index)?,
            shard: shard.clone(),
            next,
            block_start: 0,
            block: Vec::new(),
        })
    }

    /// The end of document `doc` in ids and in bytes of text; zeros before the first.
    fn end(&mut self, doc: Option<u64>) -> Result<(u64, u64)> {
        let Some(doc) = doc else {
            return Ok((0, 0));
        };
        if doc < self.block_start || doc >= self.block_start + self.block.len() as u64 {
            let start = doc - doc % INDEX_BLOCK;
            let len = INDEX_BLOCK.min(self.shard.manifest.documents - start);
            let mut bytes = vec![0u8; (len * INDEX_ENTRY) as usize];
            self.index
                .read_exact_at(&mut bytes, start * INDEX_ENTRY)
                .map_err(|e| Error::io(&self.shard.index, e))?;
            let word =
                |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            self.block = bytes
                .chunks_exact(INDEX_ENTRY as usize)
                .map(|e| (word(&e[..8]), word(&e[8..])))
                .collect();
            self.block_start = start;
        }
        Ok(self.block[(doc - self.block_start) as usize])
    }

    /// The next document's ids and the bytes of its text; `None` at the end of the shard. A
    /// damaged index or an id outside the vocabulary is an error naming the shard and the
    /// document.
    pub(crate) fn next_document(&mut self) -> Result<Option<(Vec<u32>, usize)>> {
        let m = &self.shard.manifest;
        if self.next >= m.documents {
            return Ok(None);
        }
        let doc = self.next;
        let ((start, text_start), (end, text_end)) =
            (self.end(doc.checked_sub(1))?, self.end(Some(doc))?);
        let (m, path) = (&self.shard.manifest, &self.shard.tokens);
        let damaged = |why: String| {
            Error::Data(format!(
                "{}: document {doc} of this token shard is damaged ({why}); delete the shard's \
                 files, and `--set dataset.pretokenize=true` builds them again",
                path.display()
            ))
        };
        if start > end || end > m.tokens {
            return Err(damaged(format!(
                "it spans ids {start}..{end} of {}",
                m.tokens
            )));
        }
        if text_start > text_end || text_end > m.text_bytes {
            return Err(damaged(format!(
                "it spans bytes {text_start}..{text_end} of {} of text",
                m.text_bytes
            )));
        }
        let width = u64::from(m.width);
        let mut bytes = vec![0u8; ((end - start) * width) as usize];
        self.tokens
            .read_exact_at(&mut bytes, start * width)
            .map_err(|e| Error::io(path, e))?;
        let ids: Vec<u32> = match m.width {
            2 => bytes
                .chunks_exact(2)
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            _ => bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        };
        if let Some(bad) = ids.iter().find(|&&id| u64::from(id) >= m.vocab_size) {
            return Err(damaged(format!(
                "id {bad} is outside the vocabulary of {}",
                m.vocab_size
            )));
        }
        self.next += 1;
        Ok(Some((ids, (text_end - text_start) as usize)))
    }

    /// `(next document, 0)`: where it is.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.next, 0)
    }
}
