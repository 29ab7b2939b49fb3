//! Packing (torchtitan's way): documents are tokenized, joined with EOS, and cut into rows of
//! `seq_len` tokens, so no position is padding.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::Dataloader;
use crate::batch::{HfBatch, HfLabels, TokenIds};
use crate::parallel_dims::DataParallel;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Tokenizes `docs` in parallel and joins them, each followed by the tokenizer's EOS.
pub fn pack_documents<T: Tokenizer + ?Sized>(tokenizer: &T, docs: &[String]) -> Result<Vec<u32>> {
    let Some(eos) = tokenizer.eos_id() else {
        return Err(Error::Tokenizer(
            "the tokenizer has no `<|EOS|>` token, so packed documents would run together".into(),
        ));
    };
    let mut stream = Vec::new();
    for ids in tokenizer.encode_documents(docs)? {
        stream.extend_from_slice(&ids);
        stream.push(eos);
    }
    Ok(stream)
}

/// Where a [`PackedLoader`] is in its data; saving and restoring it resumes the exact sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedState {
    /// Completed passes over the rows.
    pub epoch: u64,
    /// Next row to serve within the epoch's order.
    pub cursor: usize,
    /// Rows at the start of the epoch's order that ranks of a run on another number of ranks
    /// served before the resume (0 in an epoch that started here).
    #[serde(default)]
    pub offset: usize,
}

/// Serves batches of packed rows in Hugging Face's convention, reshuffled every epoch. Each
/// data-parallel rank serves a disjoint share of each epoch's rows.
#[derive(Debug)]
pub struct PackedLoader {
    tokens: Vec<u32>,
    dp_rank: usize,
    dp_degree: usize,
    seq_len: usize,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    device: Device,
    order: Vec<usize>,
    state: PackedState,
}

impl PackedLoader {
    /// Cuts `tokens` into rows of `seq_len`; `shuffle` reorders rows each epoch from `seed`
    /// (the same order on every rank); this rank serves rows `dp_rank`, `dp_rank + dp_degree`, ….
    pub fn new(
        dims: &impl DataParallel,
        tokens: Vec<u32>,
        seq_len: usize,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
    ) -> Result<Self> {
        let (dp_rank, dp_degree, device) = (dims.dp_rank(), dims.dp_degree(), dims.device());
        if seq_len < 2 {
            return Err(Error::config(
                "PackedLoader seq_len",
                seq_len,
                "must be at least 2",
            ));
        }
        if batch_size == 0 {
            return Err(Error::config(
                "PackedLoader batch_size",
                batch_size,
                "must be positive",
            ));
        }
        let rows = tokens.len() / seq_len;
        if rows < dp_degree {
            return Err(Error::Data(format!(
                "the corpus has {} tokens, fewer than one row of seq_len {seq_len} per data-parallel rank ({dp_degree})",
                tokens.len()
            )));
        }
        let mut loader = Self {
            tokens,
            dp_rank,
            dp_degree,
            seq_len,
            batch_size,
            seed,
            shuffle,
            device,
            order: Vec::new(),
            state: PackedState {
                epoch: 0,
                cursor: 0,
                offset: 0,
            },
        };
        loader.order = loader.epoch_order(0, 0);
        Ok(loader)
    }

    /// Number of full rows this rank serves in the current epoch (fewer in an epoch resumed on
    /// another number of ranks).
    pub fn num_rows(&self) -> usize {
        self.order.len()
    }

    /// Number of whole batches in the current epoch (at least 1: a short corpus wraps around).
    pub fn batches_per_epoch(&self) -> usize {
        (self.num_rows() / self.batch_size).max(1)
    }

    /// Total tokens in the packed stream.
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// This rank's rows of epoch `epoch`, after the first `offset` of the epoch's order.
    fn epoch_order(&self, epoch: u64, offset: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.tokens.len() / self.seq_len).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9));
            order.shuffle(&mut rng);
        }
        // Ranks share the epoch's order and take every dp_degree-th row: disjoint, and
        // together all rows but the remainder.
        let per_rank = order.len().saturating_sub(offset) / self.dp_degree;
        order
            .into_iter()
            .skip(offset + self.dp_rank)
            .step_by(self.dp_degree)
            .take(per_rank)
            .collect()
    }

    fn next_row(&mut self) -> usize {
        // A loop: a resumed epoch may have no rows left for this rank.
        while self.state.cursor == self.order.len() {
            self.state.epoch += 1;
            self.state.cursor = 0;
            self.state.offset = 0;
            self.order = self.epoch_order(self.state.epoch, 0);
        }
        let row = self.order[self.state.cursor];
        self.state.cursor += 1;
        row
    }
}

impl Dataloader for PackedLoader {
    type Batch = HfBatch;
    type State = PackedState;

    fn next_batch(&mut self) -> Result<HfBatch> {
        let mut ids = Vec::with_capacity(self.batch_size * self.seq_len);
        for _ in 0..self.batch_size {
            let start = self.next_row() * self.seq_len;
            ids.extend(
                self.tokens[start..start + self.seq_len]
                    .iter()
                    .map(|&t| i64::from(t)),
            );
        }
        let input =
            Tensor::f_from_slice(&ids)?.f_view([self.batch_size as i64, self.seq_len as i64])?;
        let input = super::upload(&input, self.device)?;
        let labels = input.shallow_clone();
        Ok(HfBatch {
            input_ids: TokenIds(input),
            labels: HfLabels(labels),
        })
    }

    fn state(&self) -> PackedState {
        self.state
    }

    fn load_state(&mut self, state: PackedState) -> Result<()> {
        let order = self.epoch_order(state.epoch, state.offset);
        if state.cursor > order.len() {
            return Err(Error::Data(format!(
                "dataloader state cursor {} is past the {} rows of this rank's epoch {} (from \
                 row {} of the epoch's order)",
                state.cursor,
                order.len(),
                state.epoch,
                state.offset
            )));
        }
        self.order = order;
        self.state = state;
        Ok(())
    }

    /// Ranks serve an epoch in lockstep, so together they served its first `offset + cursor ×
    /// ranks` rows: the new ranks continue from there.
    fn load_resharded(&mut self, states: Vec<PackedState>) -> Result<()> {
        let Some(&first) = states.first() else {
            return Err(Error::Data("no dataloader positions to resume from".into()));
        };
        if let Some((rank, other)) = states.iter().enumerate().find(|(_, s)| **s != first) {
            return Err(Error::Data(format!(
                "the ranks' dataloader positions differ (rank 0: {first:?}, rank {rank}: \
                 {other:?}); packed rows are served in lockstep, so the checkpoint is damaged"
            )));
        }
        let rows = self.tokens.len() / self.seq_len;
        let per_rank = rows.saturating_sub(first.offset) / states.len();
        if first.offset > rows || first.cursor > per_rank {
            return Err(Error::Data(format!(
                "the ranks' dataloader position {first:?} is past the {per_rank} rows each of {} \
                 ranks serves of this corpus's {rows}",
                states.len()
            )));
        }
        let offset = first.offset + first.cursor * states.len();
        self.order = self.epoch_order(first.epoch, offset);
        self.state = PackedState {
            epoch: first.epoch,
            cursor: 0,
            offset,
        };
        Ok(())
    }

    fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// Its position is a row of the epoch's order.
    fn rebatches(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::parallel_dims::ParallelDims;

    fn dims(rank: usize, world: usize) -> ParallelDims {
        ParallelDims::simulated_cpu(rank, world)
    }

    fn loader(shuffle: bool) -> PackedLoader {
        let tokens: Vec<u32> = (0..100).collect();
        PackedLoader::new(&dims(0, 1), tokens, 10, 3, 7, shuffle).expect("loader")
    }

    fn rows(batch: &HfBatch) -> Vec<i64> {
        let t = batch.input_ids.0.select(1, 0);
        Vec::<i64>::try_from(&t).expect("rows")
    }

    #[test]
    fn rows_are_consecutive_tokens_and_labels_unshifted() -> Result<()> {
        let mut l = loader(false);
        let b = l.next_batch()?;
        assert_eq!(b.input_ids.0.size(), vec![3, 10]);
        assert_eq!(rows(&b), vec![0, 10, 20]);
        assert!(b.input_ids.0.equal(&b.labels.0));
        Ok(())
    }

    #[test]
    fn restoring_state_replays_the_same_batches() -> Result<()> {
        let mut a = loader(true);
        for _ in 0..5 {
            a.next_batch()?;
        }
        let saved = a.state();
        let expected: Vec<_> = (0..6).map(|_| a.next_batch().map(|b| rows(&b))).collect();
        let mut b = loader(true);
        b.load_state(saved)?;
        let got: Vec<_> = (0..6).map(|_| b.next_batch().map(|b| rows(&b))).collect();
        assert_eq!(format!("{expected:?}"), format!("{got:?}"));
        assert!(
            b.epoch() >= 1,
            "10 rows in batches of 3 must wrap into epoch 1"
        );
        Ok(())
    }

    #[test]
    fn ranks_read_disjoint_rows_that_cover_the_epoch() -> Result<()> {
        let tokens: Vec<u32> = (0..120).collect(); // 12 rows of 10
        let mut seen = Vec::new();
        for rank in 0..3 {
            let mut l = PackedLoader::new(&dims(rank, 3), tokens.clone(), 10, 2, 5, true)?;
            assert_eq!(l.num_rows(), 4);
            for _ in 0..2 {
                seen.extend(rows(&l.next_batch()?));
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..12).map(|r| r * 10).collect::<Vec<i64>>());
        Ok(())
    }

    #[test]
    fn ranks_resumed_on_another_number_serve_the_rest_of_the_epoch_once() -> Result<()> {
        let tokens: Vec<u32> = (0..300).collect(); // 30 rows of 10
        let mut served = Vec::new();
        let mut states = Vec::new();
        for rank in 0..2 {
            let mut l = PackedLoader::new(&dims(rank, 2), tokens.clone(), 10, 2, 5, true)?;
            for _ in 0..3 {
                served.extend(rows(&l.next_batch()?));
            }
            states.push(l.state());
        }
        // 12 rows served; 3 ranks take the other 18 (6 each), then epoch 1 starts.
        for rank in 0..3 {
            let mut l = PackedLoader::new(&dims(rank, 3), tokens.clone(), 10, 2, 5, true)?;
            l.load_resharded(states.clone())?;
            assert_eq!(l.num_rows(), 6);
            for _ in 0..3 {
                served.extend(rows(&l.next_batch()?));
            }
            assert_eq!(l.epoch(), 0);
            let saved = l.state();
            l.next_batch()?;
            assert_eq!(l.epoch(), 1);
            // A resharded position restores too.
            let mut again = PackedLoader::new(&dims(rank, 3), tokens.clone(), 10, 2, 5, true)?;
            again.load_state(saved)?;
            assert_eq!(again.num_rows(), 6);
        }
        served.sort_unstable();
        assert_eq!(served, (0..30).map(|r| r * 10).collect::<Vec<i64>>());
        // Ranks out of lockstep mean a damaged checkpoint.
        states[1].cursor += 1;
        let mut l = PackedLoader::new(&dims(0, 3), tokens, 10, 2, 5, true)?;
        let err = l
            .load_resharded(states.clone())
            .expect_err("out of lockstep")
            .to_string();
        assert!(err.contains("rank 1") && err.contains("lockstep"), "{err}");
        // So does a position past the rows each rank serves.
        let past = vec![
            PackedState {
                cursor: 16,
                ..states[0]
            };
            2
        ];
        let err = l.load_resharded(past).expect_err("past").to_string();
        assert!(err.contains("past the 15 rows"), "{err}");
        Ok(())
    }

    #[test]
    fn too_short_corpus_is_an_error() {
        let err = PackedLoader::new(&dims(0, 1), vec![1, 2, 3], 10, 1, 0, false)
            .expect_err("short corpus")
            .to_string();
        assert!(
            err.contains("3 tokens") && err.contains("seq_len 10"),
            "{err}"
        );
    }
}
