//! `ReadAhead`: a dataset's documents read on a thread of their own, a few chunks ahead, so that
//! reading (files, decompression, parsing, story generation) overlaps tokenizing.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::Dataset;
use crate::{Error, Result};

/// Documents a chunk holds at least (it also holds at least [`MIN_CHUNK_BYTES`] of text), so
/// that each tokenizer call spreads several documents over each of its threads.
pub const MIN_CHUNK_DOCS: usize = 128;

/// Bytes of text a chunk holds at least: about 16K tokens of BPE on English text.
pub const MIN_CHUNK_BYTES: usize = 64 * 1024;

/// Bytes after which a chunk ends however few documents it holds, which bounds the memory of
/// the chunks read ahead when documents are large.
pub const MAX_CHUNK_BYTES: usize = 16 << 20;

/// Why a reader has no dataset left.
const LOST: &str =
    "the document reader failed earlier (a panic or no thread), and its dataset with it";

/// Chunks read ahead of the one being tokenized.
const CHUNKS_AHEAD: usize = 2;

/// Documents read in a row, and the dataset's position and epoch after the last of them.
struct Chunk<S> {
    docs: Vec<String>,
    state: S,
    epoch: u64,
}

type Read<S> = Result<Chunk<S>>;

enum Reader<D: Dataset> {
    /// Not reading; `rewind` when it ran past the position of the last chunk taken.
    Idle { dataset: D, rewind: bool },
    Running {
        rx: Receiver<Read<D::State>>,
        handle: JoinHandle<D>,
    },
    /// The reader thread panicked or could not start: the dataset went with it.
    Lost,
}

/// Reads a [`Dataset`] ahead on a background thread in chunks of whole documents. Its position
/// is the dataset's position after the last chunk taken: chunks read ahead but not taken are
/// read again after a restore, so a saved position loses and repeats nothing.
pub struct ReadAhead<D: Dataset> {
    reader: Reader<D>,
    state: D::State,
    epoch: u64,
}

impl<D: Dataset> std::fmt::Debug for ReadAhead<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reader = match self.reader {
            Reader::Idle { .. } => "idle",
            Reader::Running { .. } => "running",
            Reader::Lost => "lost",
        };
        f.debug_struct("ReadAhead")
            .field("reader", &reader)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl<D: Dataset> ReadAhead<D> {
    /// Reads `dataset` from its current position; nothing is read until the first chunk is
    /// asked for.
    pub fn new(dataset: D) -> Self {
        Self {
            state: dataset.state(),
            epoch: dataset.epoch(),
            reader: Reader::Idle {
                dataset,
                rewind: false,
            },
        }
    }

    /// The next chunk, in the dataset's order: at least [`MIN_CHUNK_DOCS`] documents and
    /// [`MIN_CHUNK_BYTES`] of text, or fewer documents that make [`MAX_CHUNK_BYTES`].
    pub fn next_chunk(&mut self) -> Result<Vec<String>> {
        self.start()?;
        let Reader::Running { rx, .. } = &self.reader else {
            return Err(Error::Data("the document reader is not running".into()));
        };
        match rx.recv() {
            Ok(Ok(chunk)) => {
                self.state = chunk.state;
                self.epoch = chunk.epoch;
                Ok(chunk.docs)
            }
            Ok(Err(e)) => {
                // The reader stopped after sending its error; keep the dataset for a restore.
                self.stop()?;
                Err(e)
            }
            Err(_) => {
                self.stop()?;
                Err(Error::Data("the document reader stopped".into()))
            }
        }
    }

    /// The dataset's position after the last chunk taken.
    pub fn state(&self) -> D::State {
        self.state.clone()
    }

    /// The dataset's completed passes after the last chunk taken.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Moves to a saved position: the next chunk starts with the document that followed it.
    pub fn load_state(&mut self, state: D::State) -> Result<()> {
        self.stop()?;
        let Reader::Idle { dataset, rewind } = &mut self.reader else {
            return Err(Error::Data(LOST.into()));
        };
        dataset.load_state(state.clone())?;
        *rewind = false;
        self.epoch = dataset.epoch();
        self.state = state;
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.reader, Reader::Lost) {
            Reader::Idle {
                mut dataset,
                rewind,
            } => {
                if rewind && let Err(e) = dataset.load_state(self.state.clone()) {
                    self.reader = Reader::Idle { dataset, rewind };
                    return Err(e);
                }
                let (tx, rx) = sync_channel(CHUNKS_AHEAD);
                // A failed spawn drops the closure, and the dataset with it.
                let handle = std::thread::Builder::new()
                    .name("titan-read".into())
                    .spawn(move || read(dataset, tx))
                    .map_err(|e| Error::Data(format!("cannot start the document reader: {e}")))?;
                self.reader = Reader::Running { rx, handle };
                Ok(())
            }
            running @ Reader::Running { .. } => {
                self.reader = running;
                Ok(())
            }
            Reader::Lost => Err(Error::Data(LOST.into())),
        }
    }

    /// Stops the reader thread and takes the dataset back, to be rewound before it reads again.
    fn stop(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.reader, Reader::Lost) {
            Reader::Running { rx, handle } => {
                drop(rx);
                let dataset = handle
                    .join()
                    .map_err(|_| Error::Data("the document reader panicked".into()))?;
                self.reader = Reader::Idle {
                    dataset,
                    rewind: true,
                };
            }
            other => self.reader = other,
        }
        Ok(())
    }
}

impl<D: Dataset> Drop for ReadAhead<D> {
    fn drop(&mut self) {
        if let Reader::Running { rx, handle } = std::mem::replace(&mut self.reader, Reader::Lost) {
            drop(rx);
            let _ = handle.join();
        }
    }
}

/// The reader thread: chunks until the receiver goes away or the dataset fails.
fn read<D: Dataset>(mut dataset: D, tx: SyncSender<Read<D::State>>) -> D {
    loop {
        let mut docs = Vec::with_capacity(MIN_CHUNK_DOCS);
        let mut bytes = 0;
        let chunk = loop {
            if (docs.len() >= MIN_CHUNK_DOCS && bytes >= MIN_CHUNK_BYTES)
                || bytes >= MAX_CHUNK_BYTES
            {
                break Ok(Chunk {
                    docs,
                    state: dataset.state(),
                    epoch: dataset.epoch(),
                });
            }
            match dataset.next_document() {
                Ok(doc) => {
                    bytes += doc.len();
                    docs.push(doc);
                }
                Err(e) => break Err(e),
            }
        };
        let failed = chunk.is_err();
        if tx.send(chunk).is_err() || failed {
            return dataset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents `0, 1, 2, …` padded to `len` bytes; fails at document `fail_at` while `armed`,
    /// panics at `panic_at`.
    struct Numbers {
        next: u64,
        len: usize,
        fail_at: Option<u64>,
        panic_at: Option<u64>,
    }

    impl Numbers {
        fn new(len: usize) -> Self {
            Self {
                next: 0,
                len,
                fail_at: None,
                panic_at: None,
            }
        }
    }

    impl Dataset for Numbers {
        type State = u64;
        fn next_document(&mut self) -> Result<String> {
            if self.fail_at == Some(self.next) {
                self.fail_at = None;
                return Err(Error::Data(format!("document {} is unreadable", self.next)));
            }
            assert_ne!(self.panic_at, Some(self.next), "reader bug");
            self.next += 1;
            let n = (self.next - 1).to_string();
            Ok("0".repeat(self.len.saturating_sub(n.len())) + &n)
        }
        fn state(&self) -> u64 {
            self.next
        }
        fn load_state(&mut self, state: u64) -> Result<()> {
            self.next = state;
            Ok(())
        }
        fn epoch(&self) -> u64 {
            self.next / 1000
        }
    }

    fn numbers(chunk: &[String]) -> Vec<u64> {
        chunk.iter().map(|d| d.parse().expect("a number")).collect()
    }

    #[test]
    fn chunks_are_whole_documents_in_order_and_sized() -> Result<()> {
        // 1 KiB documents: 128 of them make 128 KiB, over the byte minimum.
        let mut docs = ReadAhead::new(Numbers::new(1024));
        let first = numbers(&docs.next_chunk()?);
        assert_eq!(first, (0..128).collect::<Vec<_>>());
        assert_eq!(docs.state(), 128);
        // 100-byte documents: the byte minimum decides (64 KiB / 100 B → 656 documents).
        let mut docs = ReadAhead::new(Numbers::new(100));
        let first = docs.next_chunk()?;
        assert_eq!(first.len(), MIN_CHUNK_BYTES.div_ceil(100));
        assert_eq!(numbers(&docs.next_chunk()?)[0], first.len() as u64);
        // 6 MiB documents: the byte maximum ends a chunk at 3.
        let mut docs = ReadAhead::new(Numbers::new(6 << 20));
        assert_eq!(docs.next_chunk()?.len(), 3);
        assert_eq!(docs.epoch(), 0);
        Ok(())
    }

    #[test]
    fn a_restored_position_repeats_nothing_and_skips_nothing() -> Result<()> {
        let mut docs = ReadAhead::new(Numbers::new(1024));
        docs.next_chunk()?;
        docs.next_chunk()?;
        let saved = docs.state();
        // The reader thread is chunks ahead of `saved` by now.
        let reference: Vec<Vec<String>> =
            (0..3).map(|_| docs.next_chunk()).collect::<Result<_>>()?;
        docs.load_state(saved)?;
        let again: Vec<Vec<String>> = (0..3).map(|_| docs.next_chunk()).collect::<Result<_>>()?;
        assert_eq!(again, reference);
        assert_eq!(numbers(&again[0])[0], 256);
        // Into a fresh reader too, as a resumed run does.
        let mut resumed = ReadAhead::new(Numbers::new(1024));
        resumed.load_state(saved)?;
        assert_eq!(resumed.next_chunk()?, reference[0]);
        Ok(())
    }

    #[test]
    fn after_an_error_reading_continues_from_the_last_chunk_taken() -> Result<()> {
        let mut dataset = Numbers::new(1024);
        dataset.fail_at = Some(300);
        let mut docs = ReadAhead::new(dataset);
        docs.next_chunk()?;
        docs.next_chunk()?;
        let err = docs.next_chunk().expect_err("document 300 fails");
        assert!(
            err.to_string().contains("document 300 is unreadable"),
            "{err}"
        );
        assert_eq!(docs.state(), 256);
        // The failure was transient: the same documents come, from 256 on, none lost.
        assert_eq!(numbers(&docs.next_chunk()?), (256..384).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn a_panicking_reader_is_an_error_not_a_hang() {
        let mut dataset = Numbers::new(1024);
        dataset.panic_at = Some(10);
        let mut docs = ReadAhead::new(dataset);
        let err = docs.next_chunk().expect_err("the reader panicked");
        assert!(err.to_string().contains("panicked"), "{err}");
        let err = docs.load_state(0).expect_err("the dataset is gone");
        assert!(err.to_string().contains("failed earlier"), "{err}");
    }
}
