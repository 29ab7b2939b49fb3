//! Fixtures the model tests share: a loss that scores by slices and counts them, and a small
//! Llama shape.

use tch::Tensor;

use super::{LlamaConfig, ScoreLogits};
use crate::Result;
use crate::batch::HfLabels;
use crate::loss::{CausalLmLoss, LogitRows, Loss};

/// Scores a batch's logits with [`CausalLmLoss`], a slice of rows at a time when the model
/// asks, counting the slices.
pub(crate) struct BySlices<'a> {
    /// The batch's labels.
    pub labels: &'a HfLabels,
    /// Slices scored so far.
    pub slices: usize,
}

impl ScoreLogits for BySlices<'_> {
    fn whole(&mut self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        CausalLmLoss.loss_sum(logits, self.labels)
    }

    fn scores_rows(&self) -> bool {
        true
    }

    fn rows(&mut self, rows: &LogitRows<'_>) -> Result<(Tensor, Tensor)> {
        self.slices += 1;
        CausalLmLoss.loss_sum_rows(rows, self.labels)
    }
}

/// A two-block Llama of width 16 over `vocab` ids (16 positions), tied or not.
pub(crate) fn small_llama(vocab: i64, tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: vocab,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        max_position_embeddings: 16,
        tie_word_embeddings: tied,
        ..LlamaConfig::tiny()
    }
}
