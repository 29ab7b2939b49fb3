//! `DatasetConfig`: how an experiment reads its data files and lays documents into batches.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::source::Origin;
use super::{
    Convention, DEFAULT_DELIMITER, DEFAULT_FIELD, DEFAULT_PREFETCH, DataSource, Documents, Layout,
    Lookup, MAX_DOCUMENT_BYTES, SHUFFLE_BUFFER_BYTES, ShardSet, TokenLoader,
};
use crate::Result;
use crate::parallel_dims::DataParallel;
use crate::tokenizer::Tokenizer;

/// What a split's loader makes: batches of `batch_size` rows of `seq_len` tokens, documents
/// shuffled with `seed` (training only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Rows per batch.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Seed of the training split's shuffle.
    pub seed: u64,
}

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
    /// Bytes of text the shuffle buffer holds at most (it always holds one document).
    pub shuffle_buffer_bytes: usize,
    /// `packed` (documents joined with EOS, cut into full rows) or `padded` (one per row).
    pub layout: Layout,
    /// Batches prepared ahead of training on the data thread.
    pub prefetch: usize,
    /// Documents the tokenizer is trained on when it is not cached yet.
    pub tokenizer_sample: usize,
    /// The bound of one document's size in bytes: a longer text document is cut into several,
    /// a longer JSONL line or Parquet value is an error naming file and place.
    pub max_document_bytes: usize,
    /// Tokenize the data files once into token shards (those missing, files in parallel) before
    /// training; a run finds them by itself afterwards.
    pub pretokenize: bool,
    /// Where token shards are kept; unset: `$XDG_CACHE_HOME/titan/tokens`, else
    /// `~/.cache/titan/tokens`.
    pub tokens_dir: Option<PathBuf>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            field: DEFAULT_FIELD.into(),
            delimiter: DEFAULT_DELIMITER.into(),
            shuffle_buffer: 1024,
            shuffle_buffer_bytes: SHUFFLE_BUFFER_BYTES,
            layout: Layout::Packed,
            prefetch: DEFAULT_PREFETCH,
            tokenizer_sample: 20_000,
            max_document_bytes: MAX_DOCUMENT_BYTES,
            pretokenize: false,
            tokens_dir: None,
        }
    }
}

impl DatasetConfig {
    /// Checks each value's range, naming the key (`DatasetConfig.prefetch`, which
    /// `#[experiment]` names by its section: `dataset.prefetch`) before anything is built; the
    /// loaders check them again where they are used.
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("DatasetConfig.prefetch", self.prefetch),
            (
                "DatasetConfig.shuffle_buffer_bytes",
                self.shuffle_buffer_bytes,
            ),
            ("DatasetConfig.max_document_bytes", self.max_document_bytes),
        ] {
            if value == 0 {
                return Err(crate::Error::config(key, value, "must be at least 1"));
            }
        }
        super::source::check_delimiter("DatasetConfig.delimiter", &self.delimiter)
    }

    /// The training loader over `source`: this rank's documents, shuffled in a buffer of
    /// `shuffle_buffer`, tokenized and laid out (`layout`) `prefetch` batches ahead on a thread
    /// of its own.
    pub fn train_loader<T, C>(
        &self,
        dims: &impl DataParallel,
        source: &DataSource,
        tokenizer: &T,
        batching: Batching,
    ) -> Result<TokenLoader<Documents, T, C>>
    where
        T: Tokenizer + Clone + Send + Sync + 'static,
        C: Convention,
    {
        let source = self.tokenized(source, tokenizer, dims.dp_rank() == 0)?;
        let docs = Documents::new(dims, source, self.shuffle_buffer, batching.seed)?
            .with_shuffle_bytes(self.shuffle_buffer_bytes)?;
        self.loader(dims, docs, tokenizer, batching)?
            .with_prefetch(self.prefetch)
    }

    /// The validation loader over `source`: this rank's documents in order, so every
    /// evaluation scores the same batches.
    pub fn val_loader<T, C>(
        &self,
        dims: &impl DataParallel,
        source: &DataSource,
        tokenizer: &T,
        batching: Batching,
    ) -> Result<TokenLoader<Documents, T, C>>
    where
        T: Tokenizer + Clone + Send + Sync + 'static,
        C: Convention,
    {
        let source = self.tokenized(source, tokenizer, dims.dp_rank() == 0)?;
        let docs = Documents::new(dims, source, 0, batching.seed)?;
        self.loader(dims, docs, tokenizer, batching)
    }

    /// Where token shards are kept: `tokens_dir`, or the user's cache; `None` without a home.
    pub fn tokens_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.tokens_dir {
            return Some(dir.clone());
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(cache.join("titan").join("tokens"))
    }

    /// `source` read from its token shards for `tokenizer` when every file has one (built
    /// first when `pretokenize`, by rank 0 while the other ranks wait, with a progress bar when
    /// `progress`); as it is otherwise, saying how to build them when only some files have one.
    pub fn tokenized<T: crate::Tokenizer + Sync>(
        &self,
        source: &DataSource,
        tokenizer: &T,
        progress: bool,
    ) -> Result<DataSource> {
        if !matches!(source.origin, Origin::Files(_)) || source.shards.is_some() {
            return Ok(source.clone());
        }
        let Some(dir) = self.tokens_dir() else {
            if self.pretokenize {
                return Err(crate::Error::config(
                    "dataset.tokens_dir",
                    "unset",
                    "neither XDG_CACHE_HOME nor HOME is set: name a directory for token shards",
                ));
            }
            return Ok(source.clone());
        };
        if self.pretokenize {
            // Rank 0 tokenizes; the others wait for it, then find its shards.
            let shards = crate::dist::rank_zero_first("token shards", |first| {
                if first {
                    return ShardSet::build(source, &dir, tokenizer, progress);
                }
                let identity = tokenizer.identity().unwrap_or_default();
                match ShardSet::find(source, &dir, &identity)? {
                    Lookup::Found(shards) => Ok(shards),
                    Lookup::Missing { missing, files } => Err(crate::Error::Data(format!(
                        "{missing} of {files} data files have no token shard in {} after rank 0 \
                         built them: every rank must see the same dataset.tokens_dir (a shared \
                         filesystem)",
                        dir.display()
                    ))),
                }
            })?;
            tracing::info!(
                "token shards: {} ({} tokens)",
                shards.dir().display(),
                shards.tokens()
            );
            return Ok(source.clone().with_shards(shards));
        }
        let Some(identity) = tokenizer.identity() else {
            return Ok(source.clone());
        };
        let found = ShardSet::find(source, &dir, &identity).unwrap_or_else(|e| {
            tracing::warn!("{e}; reading the files");
            Lookup::Missing {
                missing: 0,
                files: 0,
            }
        });
        match found {
            Lookup::Found(shards) => {
                tracing::info!(
                    "token shards: {} ({} tokens)",
                    shards.dir().display(),
                    shards.tokens()
                );
                Ok(source.clone().with_shards(shards))
            }
            Lookup::Missing { missing, files } => {
                if missing < files {
                    tracing::warn!(
                        "{missing} of {files} data files have no token shard for this tokenizer \
                         (new or changed since): reading the files; `--set \
                         dataset.pretokenize=true` tokenizes the rest once"
                    );
                }
                Ok(source.clone())
            }
        }
    }

    fn loader<T, C>(
        &self,
        dims: &impl DataParallel,
        docs: Documents,
        tokenizer: &T,
        batching: Batching,
    ) -> Result<TokenLoader<Documents, T, C>>
    where
        T: Tokenizer + Clone + Send + Sync + 'static,
        C: Convention,
    {
        TokenLoader::new(
            dims,
            docs,
            tokenizer.clone(),
            self.layout,
            batching.seq_len,
            batching.batch_size,
        )
    }
}
