//! `TokenLoader`: a dataloader whose reading, tokenizing and collating run on a background
//! thread, a bounded number of batches ahead of training, with an exact, saveable position.

use std::marker::PhantomData;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::collate::{Collator, Convention, Layout, Pending, Rows};
use super::{Dataloader, Dataset};
use crate::parallel_dims::DataParallel;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Batches prepared ahead of training by default.
pub const DEFAULT_PREFETCH: usize = 4;

/// Where a [`TokenLoader`] is: its dataset's position and the tokenized documents it had read
/// but not yet served. Restoring it serves exactly the batches that would have followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "S: Serialize + DeserializeOwned")]
pub struct LoaderState<S> {
    /// The dataset's position.
    pub dataset: S,
    /// Tokenized documents read but not yet laid into rows.
    pub pending: Pending,
    /// The dataset's epoch when the last served batch was made.
    pub epoch: u64,
    /// Batches served so far.
    pub batches: u64,
}

type Produced<S> = Result<(Rows, LoaderState<S>)>;

struct Worker<D: Dataset, T, C> {
    rx: Receiver<Produced<D::State>>,
    handle: JoinHandle<Collator<D, T, C>>,
}

/// Reads a [`Dataset`], tokenizes and lays out its documents ([`Layout`]) into batches of the
/// convention `C` ([`super::HfConvention`] or [`super::TitanConvention`]) on a background
/// thread, `prefetch` batches ahead.
pub struct TokenLoader<D: Dataset, T, C> {
    worker: Option<Worker<D, T, C>>,
    idle: Option<Collator<D, T, C>>,
    // The worker failed mid-batch: its collator goes back to `state` before it reads again.
    rewind: bool,
    state: LoaderState<D::State>,
    checks_files: bool,
    batch_size: usize,
    seq_len: usize,
    prefetch: usize,
    device: Device,
    dp_rank: usize,
    dp_degree: usize,
    convention: PhantomData<C>,
}

impl<D: Dataset, T, C> std::fmt::Debug for TokenLoader<D, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLoader")
            .field("batch_size", &self.batch_size)
            .field("seq_len", &self.seq_len)
            .field("prefetch", &self.prefetch)
            .field("batches", &self.state.batches)
            .finish_non_exhaustive()
    }
}

impl<D, T, C> TokenLoader<D, T, C>
where
    D: Dataset,
    T: Tokenizer + Send + Sync + 'static,
    C: Convention,
{
    /// Batches of `batch_size` rows of `seq_len` tokens from `dataset`, on the rank's device.
    /// Nothing is read until the first batch is asked for.
    pub fn new(
        dims: &impl DataParallel,
        dataset: D,
        tokenizer: T,
        layout: Layout,
        seq_len: usize,
        batch_size: usize,
    ) -> Result<Self> {
        let state = LoaderState {
            dataset: dataset.state(),
            pending: Pending::new(),
            epoch: dataset.epoch(),
            batches: 0,
        };
        let checks_files = dataset.checks_files();
        let collator = Collator::new(dataset, tokenizer.into(), layout, seq_len, batch_size)?;
        Ok(Self {
            worker: None,
            idle: Some(collator),
            rewind: false,
            state,
            checks_files,
            batch_size,
            seq_len,
            prefetch: DEFAULT_PREFETCH,
            device: dims.device(),
            dp_rank: dims.dp_rank(),
            dp_degree: dims.dp_degree(),
            convention: PhantomData,
        })
    }

    /// Prepares up to `batches` batches ahead; 0 is an error (the data thread works one batch
    /// ahead at least).
    pub fn with_prefetch(mut self, batches: usize) -> Result<Self> {
        if batches == 0 {
            return Err(Error::config(
                "dataset.prefetch",
                batches,
                "must be at least 1 (batches prepared ahead on the data thread)",
            ));
        }
        self.prefetch = batches;
        Ok(self)
    }

    fn start(&mut self) -> Result<()> {
        if self.worker.is_some() {
            return Ok(());
        }
        let Some(mut collator) = self.idle.take() else {
            return Err(Error::Data(
                "the data worker stopped earlier (see the error before this one)".into(),
            ));
        };
        if self.rewind {
            // After an error, serve what would have followed the last batch served.
            if let Err(e) =
                collator.load_state(self.state.dataset.clone(), self.state.pending.clone())
            {
                self.idle = Some(collator);
                return Err(e);
            }
            self.rewind = false;
        }
        let (tx, rx) = sync_channel(self.prefetch);
        let batches = self.state.batches;
        let handle = std::thread::Builder::new()
            .name("titan-data".into())
            .spawn(move || produce(collator, tx, batches))
            .map_err(|e| Error::Data(format!("cannot start the data thread: {e}")))?;
        self.worker = Some(Worker { rx, handle });
        Ok(())
    }

    /// Stops the worker and takes its collator back.
    fn stop(&mut self) -> Result<()> {
        if let Some(Worker { rx, handle }) = self.worker.take() {
            drop(rx);
            let collator = handle
                .join()
                .map_err(|panic| Error::thread_panicked("the data thread", &*panic))?;
            self.idle = Some(collator);
        }
        Ok(())
    }
}

fn produce<D: Dataset, T: Tokenizer, C: Convention>(
    mut collator: Collator<D, T, C>,
    tx: SyncSender<Produced<D::State>>,
    mut batches: u64,
) -> Collator<D, T, C> {
    loop {
        let item = collator.next_rows().map(|rows| {
            batches += 1;
            let state = LoaderState {
                dataset: collator.dataset_state(),
                pending: collator.pending.clone(),
                epoch: collator.epoch(),
                batches,
            };
            (rows, state)
        });
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return collator;
        }
    }
}

impl<D, T, C> Dataloader for TokenLoader<D, T, C>
where
    D: Dataset,
    T: Tokenizer + Send + Sync + 'static,
    C: Convention,
{
    type Batch = C::Batch;
    type State = LoaderState<D::State>;

    fn next_batch(&mut self) -> Result<C::Batch> {
        self.start()?;
        let received = match &self.worker {
            Some(worker) => worker.rx.recv(),
            None => return Err(Error::Data("the data worker is not running".into())),
        };
        let (rows, state) = match received {
            Ok(Ok(produced)) => produced,
            Ok(Err(e)) => {
                // The worker stopped after sending its error; keep its collator, to be rewound
                // to the last batch served (or restored).
                self.rewind = true;
                self.stop()?;
                return Err(e);
            }
            Err(_) => {
                self.rewind = true;
                self.stop()?;
                return Err(Error::Data("the data thread stopped".into()));
            }
        };
        self.state = state;
        let shape = [self.batch_size as i64, self.seq_len as i64];
        let input = Tensor::f_from_slice(&rows.input)?.f_view(shape)?;
        let labels = Tensor::f_from_slice(&rows.labels)?.f_view(shape)?;
        // Through pinned memory and an asynchronous copy on CUDA: the loop does not wait here
        // for the step still running on the device.
        Ok(C::batch(
            super::upload(&input, self.device)?,
            super::upload(&labels, self.device)?,
        ))
    }

    fn state(&self) -> Self::State {
        self.state.clone()
    }

    fn load_state(&mut self, state: Self::State) -> Result<()> {
        self.stop()?;
        let Some(collator) = self.idle.as_mut() else {
            return Err(Error::Data("the data worker is gone".into()));
        };
        collator.load_state(state.dataset.clone(), state.pending.clone())?;
        self.rewind = false;
        self.state = state;
        Ok(())
    }

    fn load_resharded(&mut self, states: Vec<Self::State>) -> Result<()> {
        self.stop()?;
        let Some(collator) = self.idle.as_mut() else {
            return Err(Error::Data("the data worker is gone".into()));
        };
        let batches = states.iter().map(|s| s.batches).max().unwrap_or(0);
        let positions = states.into_iter().map(|s| (s.dataset, s.pending)).collect();
        // A load that fails halfway leaves the collator to be rewound to `state` first.
        self.rewind = true;
        collator.load_resharded(positions, self.dp_rank, self.dp_degree)?;
        self.rewind = false;
        self.state = LoaderState {
            dataset: collator.dataset_state(),
            pending: collator.pending.clone(),
            epoch: collator.epoch(),
            batches,
        };
        Ok(())
    }

    fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// Its position is in documents and their tokens not yet laid into rows.
    fn rebatches(&self) -> bool {
        true
    }

    /// Its position is in documents and their tokens not yet laid into rows, of any length.
    fn reshapes(&self) -> bool {
        true
    }

    /// Its dataset's ([`Dataset::checks_files`]).
    fn checks_files(&self) -> bool {
        self.checks_files
    }
}

impl<D: Dataset, T, C> Drop for TokenLoader<D, T, C> {
    fn drop(&mut self) {
        if let Some(Worker { rx, handle }) = self.worker.take() {
            drop(rx);
            let _ = handle.join();
        }
    }
}
