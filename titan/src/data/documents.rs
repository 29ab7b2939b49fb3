//! `Documents`: a source's documents streamed forever, this data-parallel rank's share only,
//! through a shuffle buffer bounded in documents and in bytes, with a position that saves and
//! restores exactly. The buffer's documents are shared (`Arc<str>`), so a position snapshot
//! (one per batch) copies pointers, not text.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Dataset;
use super::source::{DataSource, Reader};
use crate::parallel_dims::DataParallel;
use crate::{Error, Result};

/// Where [`Documents`] is: everything needed to continue with exactly the documents that would
/// have followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentsState {
    /// Completed passes over this rank's share.
    pub epoch: u64,
    /// Index of the unit (file) being read, within this rank's units.
    pub unit: usize,
    /// Position in that unit (see the reader: byte offset, row group…).
    pub offset: u64,
    /// Second part of the position (line, row, story index).
    pub record: u64,
    /// Documents of the source passed so far this epoch, before the split filter.
    pub seen: u64,
    /// Documents of the split passed so far this epoch, before the rank filter.
    pub in_split: u64,
    /// Documents yielded this epoch.
    pub yielded: u64,
    /// Documents waiting in the shuffle buffer.
    #[serde(with = "shared_texts")]
    pub buffer: Vec<Arc<str>>,
    /// The shuffle's random generator.
    pub rng: ChaCha8Rng,
}

/// Shared texts in a saved state: written as a list of strings.
mod shared_texts {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(texts: &[Arc<str>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(texts.iter().map(|t| &**t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Arc<str>>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        Ok(texts.into_iter().map(Arc::from).collect())
    }
}

/// The default bound of the shuffle buffer in bytes (`dataset.shuffle_buffer_bytes`).
pub const SHUFFLE_BUFFER_BYTES: usize = 64 << 20;

/// A source's documents for one data-parallel rank, forever: units (files) are split between
/// ranks when there are at least as many as ranks, documents otherwise; each epoch reads the
/// share in order, and a buffer of `shuffle_buffer` documents (0: none) and at most
/// `SHUFFLE_BUFFER_BYTES` bytes ([`Documents::with_shuffle_bytes`]) shuffles it.
#[derive(Debug)]
pub struct Documents {
    source: DataSource,
    units: Vec<usize>,
    by_document: bool,
    dp_rank: u64,
    dp_degree: u64,
    shuffle_buffer: usize,
    shuffle_bytes: usize,
    /// Bytes of the documents in the buffer.
    buffered_bytes: usize,
    state: DocumentsState,
    reader: Option<Reader>,
    // Whether the open unit was opened at its start, and how many documents it gave since.
    unit_from_start: bool,
    unit_docs: u64,
}

impl Documents {
    /// This rank's share of `source`, shuffled through a buffer of `shuffle_buffer` documents
    /// with a generator seeded by `seed` and the rank.
    pub fn new(
        dims: &impl DataParallel,
        source: DataSource,
        shuffle_buffer: usize,
        seed: u64,
    ) -> Result<Self> {
        let (rank, degree) = (dims.dp_rank(), dims.dp_degree());
        let n = source.num_units();
        let by_document = n < degree;
        let units: Vec<usize> = if by_document {
            (0..n).collect()
        } else {
            (rank..n).step_by(degree).collect()
        };
        let rng =
            ChaCha8Rng::seed_from_u64(seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Ok(Self {
            source,
            units,
            by_document,
            dp_rank: rank as u64,
            dp_degree: degree as u64,
            shuffle_buffer,
            shuffle_bytes: SHUFFLE_BUFFER_BYTES,
            buffered_bytes: 0,
            state: DocumentsState {
                epoch: 0,
                unit: 0,
                offset: 0,
                record: 0,
                seen: 0,
                in_split: 0,
                yielded: 0,
                buffer: Vec::new(),
                rng,
            },
            reader: None,
            unit_from_start: false,
            unit_docs: 0,
        })
    }

    /// Bounds the shuffle buffer to `bytes` of text too (it always holds at least one
    /// document); 0 is an error.
    pub fn with_shuffle_bytes(mut self, bytes: usize) -> Result<Self> {
        if bytes == 0 {
            return Err(Error::config(
                "dataset.shuffle_buffer_bytes",
                bytes,
                "must be at least 1",
            ));
        }
        self.shuffle_bytes = bytes;
        Ok(self)
    }

    /// The source read.
    pub fn source(&self) -> &DataSource {
        &self.source
    }

    /// The next document of this rank's share in source order, wrapping into the next epoch.
    fn next_in_order(&mut self) -> Result<String> {
        loop {
            if self.reader.is_none() {
                let s = &self.state;
                self.reader = Some(self.source.open_unit(
                    self.units[s.unit],
                    s.offset,
                    s.record,
                )?);
                self.unit_from_start = s.offset == 0 && s.record == 0;
                self.unit_docs = 0;
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let doc = reader.next_document()?;
            let (offset, record) = reader.position();
            self.state.offset = offset;
            self.state.record = record;
            let Some(doc) = doc else {
                if self.unit_from_start && self.unit_docs == 0 {
                    return Err(Error::Data(format!(
                        "{}: no documents (the file is empty or holds only blank documents)",
                        self.source.unit_name(self.units[self.state.unit])
                    )));
                }
                self.end_unit()?;
                continue;
            };
            self.unit_docs += 1;
            let index = self.state.seen;
            self.state.seen += 1;
            if !self.source.split.contains(index) {
                continue;
            }
            let in_split = self.state.in_split;
            self.state.in_split += 1;
            if self.by_document && in_split % self.dp_degree != self.dp_rank {
                continue;
            }
            self.state.yielded += 1;
            return Ok(doc);
        }
    }

    fn end_unit(&mut self) -> Result<()> {
        self.reader = None;
        self.state.offset = 0;
        self.state.record = 0;
        self.state.unit += 1;
        if self.state.unit < self.units.len() {
            return Ok(());
        }
        if self.state.yielded == 0 {
            return Err(Error::Data(format!(
                "{}: no documents for data-parallel rank {} of {} in one whole pass",
                self.source.describe(),
                self.dp_rank,
                self.dp_degree
            )));
        }
        self.state.unit = 0;
        self.state.epoch += 1;
        self.state.seen = 0;
        self.state.in_split = 0;
        self.state.yielded = 0;
        Ok(())
    }
}

impl Dataset for Documents {
    type State = DocumentsState;

    fn next_document(&mut self) -> Result<String> {
        if self.shuffle_buffer == 0 {
            return self.next_in_order();
        }
        while self.state.buffer.len() < self.shuffle_buffer
            && (self.state.buffer.is_empty() || self.buffered_bytes < self.shuffle_bytes)
        {
            let doc = self.next_in_order()?;
            self.buffered_bytes += doc.len();
            self.state.buffer.push(Arc::from(doc));
        }
        let i = self.state.rng.random_range(0..self.state.buffer.len());
        let doc = self.state.buffer.swap_remove(i);
        self.buffered_bytes -= doc.len();
        Ok(doc.to_string())
    }

    fn state(&self) -> DocumentsState {
        self.state.clone()
    }

    fn load_state(&mut self, state: DocumentsState) -> Result<()> {
        if state.unit >= self.units.len() {
            return Err(Error::Data(format!(
                "dataset state names unit {}, but this rank reads {} of {}",
                state.unit,
                self.units.len(),
                self.source.describe()
            )));
        }
        self.reader = None;
        self.buffered_bytes = state.buffer.iter().map(|d| d.len()).sum();
        self.state = state;
        Ok(())
    }

    fn epoch(&self) -> u64 {
        self.state.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, StoryConfig};
    use crate::parallel_dims::ParallelDims;
    use std::collections::HashSet;

    fn dims(rank: usize, world: usize) -> ParallelDims {
        ParallelDims::simulated_cpu(rank, world)
    }

    fn stories(n: usize, split: Split) -> DataSource {
        DataSource::stories(
            StoryConfig {
                seed: 3,
                num_stories: n,
            },
            split,
        )
    }

    fn take(docs: &mut Documents, n: usize) -> Result<Vec<String>> {
        (0..n).map(|_| docs.next_document()).collect()
    }

    #[test]
    fn the_shuffle_buffer_is_bounded_in_bytes_and_its_snapshot_shares_the_text() -> Result<()> {
        let mut docs = Documents::new(&dims(0, 1), stories(200, Split::All), 1000, 0)?
            .with_shuffle_bytes(2_000)?;
        for _ in 0..50 {
            let taken = docs.next_document()?;
            assert!(taken.len() < 3_000, "a story of {} bytes", taken.len());
            let state = docs.state();
            let bytes: usize = state.buffer.iter().map(|d| d.len()).sum();
            // Filling stops at the first document past the bound (stories are < 3,000 bytes),
            // far below the 1,000 documents the count alone allows.
            assert!(bytes < 2_000 + 3_000, "{bytes} bytes buffered");
            assert!(state.buffer.len() <= 6, "{} documents", state.buffer.len());
            // The snapshot points at the same text.
            assert!(Arc::ptr_eq(&state.buffer[0], &docs.state.buffer[0]));
        }
        // A saved state round-trips through JSON (a checkpoint) and continues exactly.
        let saved = serde_json::to_string(&docs.state())?;
        let next = take(&mut docs, 5)?;
        let mut resumed = Documents::new(&dims(0, 1), stories(200, Split::All), 1000, 0)?
            .with_shuffle_bytes(2_000)?;
        resumed.load_state(serde_json::from_str(&saved)?)?;
        assert_eq!(take(&mut resumed, 5)?, next);
        assert!(
            Documents::new(&dims(0, 1), stories(10, Split::All), 4, 0)?
                .with_shuffle_bytes(0)
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn splits_are_disjoint_and_epochs_wrap() -> Result<()> {
        let mut train = Documents::new(&dims(0, 1), stories(40, Split::Train), 0, 0)?;
        let mut val = Documents::new(&dims(0, 1), stories(40, Split::Validation), 0, 0)?;
        let t: HashSet<String> = take(&mut train, 38)?.into_iter().collect();
        let v = take(&mut val, 2)?;
        assert!(v.iter().all(|d| !t.contains(d)));
        assert_eq!(train.epoch(), 0);
        take(&mut train, 1)?;
        assert_eq!(train.epoch(), 1);
        Ok(())
    }

    #[test]
    fn ranks_share_documents_and_shuffled_state_resumes() -> Result<()> {
        let all = stories(30, Split::All).sample(30)?;
        let mut union = Vec::new();
        for rank in 0..3 {
            let mut d = Documents::new(&dims(rank, 3), stories(30, Split::All), 0, 0)?;
            union.extend(take(&mut d, 10)?);
        }
        union.sort();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(union, sorted);

        let mut a = Documents::new(&dims(1, 2), stories(30, Split::Train), 8, 5)?;
        take(&mut a, 17)?;
        let saved: DocumentsState = serde_json::from_str(&serde_json::to_string(&a.state())?)?;
        let expected = take(&mut a, 40)?;
        let mut b = Documents::new(&dims(1, 2), stories(30, Split::Train), 8, 5)?;
        b.load_state(saved)?;
        assert_eq!(take(&mut b, 40)?, expected);
        Ok(())
    }
}
