//! From documents to rows of token ids: packing (torchtitan's way) or one document per padded
//! row (the seed's collator), in either label convention.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::read_ahead::ReadAhead;
use super::{Dataset, Doc};
use crate::batch::{Batch, HfBatch, HfLabels, IGNORE_INDEX, ShiftedLabels, TitanBatch, TokenIds};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How documents are laid into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Documents joined with EOS and cut into full rows: no padding, documents cross rows.
    Packed,
    /// One document per row, padded on the right with PAD (labels −100 there); a document
    /// longer than a row continues on the next rows.
    Padded,
}

/// A label convention: how long a row's token window is and which batch type carries it.
/// The batch type is what pairs a dataloader with its loss at compile time.
pub trait Convention: Send + 'static {
    /// The batches of this convention.
    type Batch: Batch;
    /// Whether labels are pre-shifted (a window of `seq_len + 1` tokens gives `seq_len`
    /// inputs and `seq_len` labels) rather than equal to the inputs.
    const SHIFTED: bool;
    /// Wraps (b, t) input ids and labels.
    fn batch(input: Tensor, labels: Tensor) -> Self::Batch;
}

/// Hugging Face's convention: `input_ids` and unshifted `labels` ([`HfBatch`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HfConvention;

/// Titan's convention: `inputs` and pre-shifted labels ([`TitanBatch`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TitanConvention;

impl Convention for HfConvention {
    type Batch = HfBatch;
    const SHIFTED: bool = false;
    fn batch(input: Tensor, labels: Tensor) -> HfBatch {
        HfBatch {
            input_ids: TokenIds(input),
            labels: HfLabels(labels),
        }
    }
}

impl Convention for TitanConvention {
    type Batch = TitanBatch;
    const SHIFTED: bool = true;
    fn batch(input: Tensor, labels: Tensor) -> TitanBatch {
        TitanBatch {
            inputs: TokenIds(input),
            labels: ShiftedLabels(labels),
        }
    }
}

/// Token ids of documents read but not yet laid into rows, each ending in EOS.
pub type Pending = VecDeque<Vec<u32>>;

/// One batch's rows, flat (b × t), ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Input ids.
    pub input: Vec<i64>,
    /// Labels (unshifted or shifted, per the convention), −100 where ignored.
    pub labels: Vec<i64>,
}

/// Reads documents from a dataset (on a thread of its own, [`ReadAhead`]), tokenizes them in
/// parallel a chunk at a time, and lays them into rows.
/// `C`, the label convention, decides whether a row's window holds one extra token.
#[derive(Debug)]
pub struct Collator<D: Dataset, T, C> {
    docs: ReadAhead<D>,
    /// Tokenized documents not yet laid into rows.
    pub pending: Pending,
    tokenizer: Arc<T>,
    layout: Layout,
    convention: PhantomData<C>,
    seq_len: usize,
    batch_size: usize,
    eos: u32,
    pad: u32,
}

impl<D: Dataset, T: Tokenizer, C: Convention> Collator<D, T, C> {
    /// A collator of `batch_size` rows of `seq_len` tokens. The tokenizer needs an EOS id, and
    /// a PAD id for [`Layout::Padded`].
    pub fn new(
        dataset: D,
        tokenizer: Arc<T>,
        layout: Layout,
        seq_len: usize,
        batch_size: usize,
    ) -> Result<Self> {
        if seq_len < 2 {
            return Err(Error::config("seq_len", seq_len, "must be at least 2"));
        }
        if batch_size == 0 {
            return Err(Error::config("batch_size", batch_size, "must be positive"));
        }
        let eos = tokenizer.eos_id().ok_or_else(|| {
            Error::Tokenizer(format!(
                "the tokenizer has no EOS token (`Tokenizer::eos_id`; `{}` for BpeTokenizer) to \
                 end documents with",
                crate::tokenizer::EOS
            ))
        })?;
        let pad = match (layout, tokenizer.pad_id()) {
            (_, Some(pad)) => pad,
            (Layout::Packed, None) => eos,
            (Layout::Padded, None) => {
                return Err(Error::Tokenizer(
                    "the padded layout needs a PAD token, and the tokenizer has none".into(),
                ));
            }
        };
        Ok(Self {
            docs: ReadAhead::new(dataset),
            pending: Pending::new(),
            tokenizer,
            layout,
            convention: PhantomData,
            seq_len,
            batch_size,
            eos,
            pad,
        })
    }

    /// Tokens a row's window holds: `seq_len`, plus one when labels are shifted.
    fn window(&self) -> usize {
        self.seq_len + usize::from(C::SHIFTED)
    }

    /// The dataset's position after the documents read so far (tokenized: in `pending` or
    /// already laid into rows). After an error, restore a saved position ([`Self::load_state`])
    /// before reading on; [`super::TokenLoader`] does so itself.
    pub fn dataset_state(&self) -> D::State {
        self.docs.state()
    }

    /// The dataset's completed passes after the documents read so far.
    pub fn epoch(&self) -> u64 {
        self.docs.epoch()
    }

    /// Moves to a saved position: the dataset's, and the tokenized documents pending there.
    pub fn load_state(&mut self, dataset: D::State, pending: Pending) -> Result<()> {
        self.docs.load_state(dataset)?;
        self.pending = pending;
        Ok(())
    }

    /// Moves to the positions of a run on another number of ranks, by old rank: its dataset's
    /// ([`Dataset::load_resharded`]), and every `degree`-th of the old ranks' pending documents
    /// from the `rank`-th, in rank order.
    pub fn load_resharded(
        &mut self,
        states: Vec<(D::State, Pending)>,
        rank: usize,
        degree: usize,
    ) -> Result<()> {
        let (datasets, pendings): (Vec<_>, Vec<_>) = states.into_iter().unzip();
        self.docs.load_resharded(datasets)?;
        self.pending = super::deal(pendings.into_iter().flatten(), rank, degree);
        Ok(())
    }

    /// Tokenizes chunks of documents until `pending` holds `tokens` tokens and `docs`
    /// documents.
    fn fill(&mut self, tokens: usize, docs: usize) -> Result<()> {
        let mut have_tokens: usize = self.pending.iter().map(Vec::len).sum();
        while have_tokens < tokens || self.pending.len() < docs {
            // The reader thread reads the next chunks meanwhile. Texts are tokenized in one
            // call; ids from token shards pass through, in the chunk's order.
            let chunk = self.docs.next_chunk()?;
            let mut texts = Vec::new();
            let mut order = Vec::with_capacity(chunk.len());
            for doc in chunk {
                match doc {
                    Doc::Text(text) => {
                        texts.push(text);
                        order.push(None);
                    }
                    Doc::Tokens { ids, .. } => order.push(Some(ids)),
                }
            }
            let mut encoded = if texts.is_empty() {
                Vec::new()
            } else {
                self.tokenizer.encode_documents(&texts)?
            }
            .into_iter();
            for slot in order {
                let mut ids = match slot {
                    Some(ids) => ids,
                    None => encoded.next().ok_or_else(|| {
                        Error::Tokenizer("the tokenizer returned fewer documents than given".into())
                    })?,
                };
                ids.push(self.eos);
                have_tokens += ids.len();
                self.pending.push_back(ids);
            }
        }
        Ok(())
    }

    /// The next batch's rows.
    pub fn next_rows(&mut self) -> Result<Rows> {
        let (b, w) = (self.batch_size, self.window());
        let mut input = Vec::with_capacity(b * self.seq_len);
        let mut labels = Vec::with_capacity(b * self.seq_len);
        let mut window = Vec::with_capacity(w);
        match self.layout {
            Layout::Packed => self.fill(b * w, 0)?,
            Layout::Padded => self.fill(0, b)?,
        }
        for _ in 0..b {
            window.clear();
            match self.layout {
                Layout::Packed => {
                    self.fill(w, 0)?;
                    while window.len() < w {
                        let Some(front) = self.pending.front_mut() else {
                            break;
                        };
                        let take = (w - window.len()).min(front.len());
                        window.extend(front.drain(..take));
                        if front.is_empty() {
                            self.pending.pop_front();
                        }
                    }
                }
                Layout::Padded => {
                    self.fill(0, 1)?;
                    let Some(front) = self.pending.front_mut() else {
                        return Err(Error::Data("no document to lay into a row".into()));
                    };
                    if front.len() <= w {
                        window.append(front);
                        self.pending.pop_front();
                    } else {
                        window.extend_from_slice(&front[..w]);
                        // With shifted labels the last token is only a label: it starts the
                        // next row as an input, so no next-token pair is lost.
                        front.drain(..w - usize::from(C::SHIFTED));
                    }
                }
            }
            self.lay_row(&window, &mut input, &mut labels);
        }
        Ok(Rows { input, labels })
    }

    /// Appends one row of `seq_len` inputs and labels made from `window` (padded on the right).
    fn lay_row(&self, window: &[u32], input: &mut Vec<i64>, labels: &mut Vec<i64>) {
        let t = self.seq_len;
        let shift = usize::from(C::SHIFTED);
        for i in 0..t {
            input.push(
                window
                    .get(i)
                    .map_or(i64::from(self.pad), |&id| i64::from(id)),
            );
            labels.push(
                window
                    .get(i + shift)
                    .map_or(IGNORE_INDEX, |&id| i64::from(id)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    /// A tokenizer with one id per character (`a` = 10, …), BOS 0, PAD 1, EOS 2.
    #[derive(Debug)]
    struct Chars;

    impl Tokenizer for Chars {
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            Ok(text.bytes().map(|b| u32::from(b - b'a') + 10).collect())
        }
        fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
            texts.iter().map(|t| self.encode(t)).collect()
        }
        fn decode(&self, _: &[u32]) -> Result<String> {
            Ok(String::new())
        }
        fn vocab_size(&self) -> usize {
            40
        }
        fn max_len(&self) -> usize {
            64
        }
        fn eos_id(&self) -> Option<u32> {
            Some(2)
        }
        fn pad_id(&self) -> Option<u32> {
            Some(1)
        }
    }

    /// Cycles through fixed documents.
    struct Fixed(Vec<&'static str>, usize);

    impl Dataset for Fixed {
        type State = usize;
        fn next_document(&mut self) -> Result<String> {
            self.1 += 1;
            Ok(self.0[(self.1 - 1) % self.0.len()].to_string())
        }
        fn state(&self) -> usize {
            self.1
        }
        fn load_state(&mut self, state: usize) -> Result<()> {
            self.1 = state;
            Ok(())
        }
        fn epoch(&self) -> u64 {
            (self.1 / self.0.len()) as u64
        }
    }

    fn collator<C: Convention>(layout: Layout) -> Result<Collator<Fixed, Chars, C>> {
        let docs = Fixed(vec!["abc", "defghij"], 0);
        Collator::new(docs, Arc::new(Chars), layout, 4, 2)
    }

    #[test]
    fn packed_rows_are_full_and_cross_documents() -> Result<()> {
        let mut hf = collator::<HfConvention>(Layout::Packed)?;
        let rows = hf.next_rows()?;
        // abc EOS | defg — hij EOS …
        assert_eq!(rows.input, [10, 11, 12, 2, 13, 14, 15, 16]);
        assert_eq!(rows.labels, rows.input);
        let mut titan = collator::<TitanConvention>(Layout::Packed)?;
        let rows = titan.next_rows()?;
        // torchtitan takes seq_len + 1 tokens per row: abc EOS d | efghi
        assert_eq!(rows.input, [10, 11, 12, 2, 14, 15, 16, 17]);
        assert_eq!(rows.labels, [11, 12, 2, 13, 15, 16, 17, 18]);
        Ok(())
    }

    #[test]
    fn padded_rows_hold_one_document_and_split_long_ones() -> Result<()> {
        let mut hf = collator::<HfConvention>(Layout::Padded)?;
        let rows = hf.next_rows()?;
        // abc EOS | defg (continued on the next row: hij EOS)
        assert_eq!(rows.input, [10, 11, 12, 2, 13, 14, 15, 16]);
        let rows = hf.next_rows()?;
        assert_eq!(rows.input, [17, 18, 19, 2, 10, 11, 12, 2]);
        let mut titan = collator::<TitanConvention>(Layout::Padded)?;
        let rows = titan.next_rows()?;
        // abc EOS + pad; defgh → inputs defg, labels efgh; the next row starts at h.
        assert_eq!(rows.input, [10, 11, 12, 2, 13, 14, 15, 16]);
        assert_eq!(rows.labels, [11, 12, 2, IGNORE_INDEX, 14, 15, 16, 17]);
        let rows = titan.next_rows()?;
        assert_eq!(rows.input, [17, 18, 19, 2, 10, 11, 12, 2]);
        assert_eq!(
            rows.labels,
            [18, 19, 2, IGNORE_INDEX, 11, 12, 2, IGNORE_INDEX]
        );
        Ok(())
    }

    #[test]
    fn padding_has_ignored_labels() -> Result<()> {
        let docs = Fixed(vec!["ab"], 0);
        let mut c: Collator<_, _, HfConvention> =
            Collator::new(docs, Arc::new(Chars), Layout::Padded, 5, 1)?;
        let rows = c.next_rows()?;
        assert_eq!(rows.input, [10, 11, 2, 1, 1]);
        assert_eq!(rows.labels, [10, 11, 2, IGNORE_INDEX, IGNORE_INDEX]);
        Ok(())
    }
}
