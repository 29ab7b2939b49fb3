//! `ReadAhead`: a dataset's documents read on a thread of their own, a few chunks ahead, so that
//! reading (files, decompression, parsing, story generation) overlaps tokenizing.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{Dataset, Doc};
use crate::{Error, Result};

/// Documents a chunk holds at least (unless [`MAX_CHUNK_BYTES`] ends it first), so that each
/// tokenizer call spreads several documents over each of its threads.
pub const MIN_CHUNK_DOCS: usize = 128;

/// Bytes of text a chunk holds at least (unless [`MAX_CHUNK_DOCS`] ends it first): about 16K
/// tokens of BPE on English text.
pub const MIN_CHUNK_BYTES: usize = 64 * 1024;

/// Bytes of text after which a chunk ends, at the document that reaches them, however few
/// documents it holds: large documents make chunks of a few.
pub const MAX_CHUNK_BYTES: usize = 16 << 20;

/// Documents after which a chunk ends however little text it holds (empty documents).
pub const MAX_CHUNK_DOCS: usize = 16_384;

/// Chunks waiting in the channel. With the one the reader is filling and the one being
/// tokenized, at most three chunks are in memory (each up to [`MAX_CHUNK_BYTES`] plus one
/// document, with a copy of the dataset's position).
const CHUNKS_AHEAD: usize = 1;

/// Why a reader has no dataset left.
const LOST: &str =
    "the document reader failed earlier (a panic or no thread), and its dataset with it";

/// Documents read in a row, and the dataset's position and epoch after the last of them.
struct Chunk<S> {
    docs: Vec<Doc>,
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
    /// [`MIN_CHUNK_BYTES`] of text, or fewer that make [`MAX_CHUNK_BYTES`] or
    /// [`MAX_CHUNK_DOCS`]. After an error, the next chunk starts after the last one taken.
    pub fn next_chunk(&mut self) -> Result<Vec<Doc>> {
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
        // A load that fails halfway leaves the dataset to be rewound before it reads again.
        *rewind = true;
        dataset.load_state(state.clone())?;
        *rewind = false;
        self.epoch = dataset.epoch();
        self.state = state;
        Ok(())
    }

    /// Moves to the positions of a run on another number of ranks
    /// ([`Dataset::load_resharded`]): the next chunk starts this rank's share of what they left.
    pub fn load_resharded(&mut self, states: Vec<D::State>) -> Result<()> {
        self.stop()?;
        let Reader::Idle { dataset, rewind } = &mut self.reader else {
            return Err(Error::Data(LOST.into()));
        };
        *rewind = true;
        dataset.load_resharded(states)?;
        *rewind = false;
        self.epoch = dataset.epoch();
        self.state = dataset.state();
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
                    .map_err(|panic| Error::thread_panicked("the document reader", &*panic))?;
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
                || docs.len() >= MAX_CHUNK_DOCS
            {
                break Ok(Chunk {
                    docs,
                    state: dataset.state(),
                    epoch: dataset.epoch(),
                });
            }
            match dataset.next_doc() {
                Ok(doc) => {
                    bytes += doc.size();
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// Documents `0, 1, 2, …` padded with zeros to `len` bytes (empty when `len` is 0); 1,000
    /// to an epoch; `furthest` counts the documents read. Fails once at document `fail_at`,
    /// panics at `panic_at`.
    struct Numbers {
        next: u64,
        len: usize,
        furthest: Arc<AtomicU64>,
        fail_at: Option<u64>,
        panic_at: Option<u64>,
    }

    impl Numbers {
        fn new(len: usize) -> Self {
            Self {
                next: 0,
                len,
                furthest: Arc::new(AtomicU64::new(0)),
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
            assert_ne!(
                self.panic_at,
                Some(self.next),
                "document {} panics",
                self.next
            );
            self.next += 1;
            self.furthest.fetch_max(self.next, Ordering::SeqCst);
            if self.len == 0 {
                return Ok(String::new());
            }
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

    fn numbers(chunk: &[Doc]) -> Vec<u64> {
        chunk
            .iter()
            .map(|d| match d {
                Doc::Text(t) => t.parse().expect("a number"),
                Doc::Tokens { .. } => panic!("ids from a text dataset"),
            })
            .collect()
    }

    /// Waits until the reader thread has read document `n` (it reads ahead on its own).
    fn wait_until_read(furthest: &AtomicU64, n: u64) {
        let start = Instant::now();
        while furthest.load(Ordering::SeqCst) < n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the reader never got to {n}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn chunks_are_whole_documents_in_order_and_sized() -> Result<()> {
        // 1 KiB documents: 128 of them make 128 KiB, over the byte minimum.
        let mut docs = ReadAhead::new(Numbers::new(1024));
        assert_eq!(numbers(&docs.next_chunk()?), (0..128).collect::<Vec<_>>());
        assert_eq!(numbers(&docs.next_chunk()?), (128..256).collect::<Vec<_>>());
        // 100-byte documents: the byte minimum decides (64 KiB / 100 B → 656 documents).
        let mut docs = ReadAhead::new(Numbers::new(100));
        let first = docs.next_chunk()?;
        assert_eq!(first.len(), MIN_CHUNK_BYTES.div_ceil(100));
        assert_eq!(numbers(&docs.next_chunk()?)[0], first.len() as u64);
        // 6 MiB documents: the byte maximum ends a chunk at the third.
        let mut docs = ReadAhead::new(Numbers::new(6 << 20));
        assert_eq!(docs.next_chunk()?.len(), 3);
        // Empty documents: the document maximum ends a chunk.
        let mut docs = ReadAhead::new(Numbers::new(0));
        assert_eq!(docs.next_chunk()?.len(), MAX_CHUNK_DOCS);
        assert_eq!(docs.state(), MAX_CHUNK_DOCS as u64);
        Ok(())
    }

    #[test]
    fn the_position_is_the_last_chunk_taken_not_the_readers() -> Result<()> {
        let dataset = Numbers::new(1024);
        let furthest = dataset.furthest.clone();
        let mut docs = ReadAhead::new(dataset);
        docs.next_chunk()?;
        docs.next_chunk()?;
        // The reader has sent the third chunk and is reading the fourth.
        wait_until_read(&furthest, 3 * 128 + 1);
        assert_eq!(docs.state(), 256);
        // Epochs too: 7 chunks taken is document 896, epoch 0, while the reader is past 1,000.
        for _ in 0..5 {
            docs.next_chunk()?;
        }
        wait_until_read(&furthest, 1025);
        assert_eq!((docs.state(), docs.epoch()), (896, 0));
        docs.next_chunk()?;
        assert_eq!((docs.state(), docs.epoch()), (1024, 1));
        Ok(())
    }

    #[test]
    fn a_restored_position_repeats_nothing_and_skips_nothing() -> Result<()> {
        let dataset = Numbers::new(1024);
        let furthest = dataset.furthest.clone();
        let mut docs = ReadAhead::new(dataset);
        docs.next_chunk()?;
        docs.next_chunk()?;
        let saved = docs.state();
        let reference: Vec<Vec<Doc>> = (0..3).map(|_| docs.next_chunk()).collect::<Result<_>>()?;
        // Restored while the reader is a chunk past the last one taken.
        wait_until_read(&furthest, 6 * 128 + 1);
        docs.load_state(saved)?;
        let again: Vec<Vec<Doc>> = (0..3).map(|_| docs.next_chunk()).collect::<Result<_>>()?;
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
        assert!(err.to_string().contains("document 10 panics"), "{err}");
        let err = docs.load_state(0).expect_err("the dataset is gone");
        assert!(err.to_string().contains("failed earlier"), "{err}");
    }
}
