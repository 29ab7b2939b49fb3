//! The `Model` role: a module that maps an input to logits and owns named parameters.

mod generate;
mod llama;
mod params;
#[cfg(test)]
pub(crate) mod testing;

pub use generate::{GenerateConfig, generate};
pub use llama::{AttnMaskType, Llama, LlamaConfig, RopeScaling};
pub use params::{ParamGroup, Parameter, Parameters};

use tch::{Device, Tensor};

use crate::Result;
use crate::loss::LogitRows;

/// A trainable model. `Input` is what a batch must carry for it (checked at compile time
/// against the dataloader's batch by `#[experiment]`). Checkpoints save its weights as its
/// [`Model::parameters`]; whatever else it keeps between steps (buffers such as running
/// statistics) it saves as [`crate::checkpoint::Stateful`], which an experiment's model
/// implements (or says [`crate::checkpoint::Stateless`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model",
    label = "a model goes here",
    note = "a model implements `titan::Model`: it maps its `Input` to logits and exposes its parameters"
)]
pub trait Model {
    /// What the model consumes, e.g. [`crate::batch::TokenIds`].
    type Input;
    /// Logits (b, t, vocab) for one input.
    fn forward(&self, input: &Self::Input) -> Result<Tensor>;
    /// The named, trainable parameters with the group of each (which take weight decay), for
    /// optimizers and checkpoints.
    fn parameters(&self) -> Parameters;
    /// Where the parameters live.
    fn device(&self) -> Device;
    /// Number of token ids the embedding accepts.
    fn vocab_size(&self) -> i64;
    /// Longest sequence the model accepts.
    fn max_seq_len(&self) -> i64;
    /// Runs the forward pass, `loss` on the logits (it returns a loss sum and its token count;
    /// a closure of the logits is one) and the backward pass of the sum, accumulating
    /// gradients; returns the sum (detached) and the count. Models that recompute activations
    /// in backward (activation checkpointing) or score their logits a slice of rows at a time
    /// ([`ScoreLogits::rows`]) override it; the default is [`forward_then_backward`].
    fn forward_backward(
        &self,
        input: &Self::Input,
        loss: &mut dyn ScoreLogits,
    ) -> Result<(Tensor, Tensor)> {
        forward_then_backward(self, input, loss)
    }
    /// Writes the model into `dir` as `transformers.AutoModelForCausalLM` loads it
    /// (`config.json`, `model.safetensors`, `generation_config.json`), with the tokenizer's
    /// special ids. The default is an error: a model without a Hugging Face form says so.
    fn save_hf(&self, dir: &std::path::Path, tokens: &SpecialTokens) -> Result<()> {
        let _ = (dir, tokens);
        Err(crate::Error::Unsupported(format!(
            "{} has no Hugging Face form",
            std::any::type_name::<Self>()
        )))
    }
    /// Loads the weights of a Hugging Face directory `transformers` wrote (`config.json`,
    /// `model.safetensors` or its shards), for continued pretraining; a config that does not
    /// fit this model is an error naming the field. The default is an error, as for `save_hf`.
    fn load_hf(&mut self, dir: &std::path::Path) -> Result<()> {
        let _ = dir;
        Err(crate::Error::Unsupported(format!(
            "{} has no Hugging Face form",
            std::any::type_name::<Self>()
        )))
    }
    /// Training FLOPs (forward and backward) per token at `seq_len`, for tflops and MFU;
    /// by default `6 · parameters`, models with attention add its cost.
    fn flops_per_token(&self, seq_len: i64) -> f64 {
        let _ = seq_len;
        6.0 * self.parameters().count() as f64
    }
}

/// The loss a model's training pass scores its logits with: the batch's whole logits, or,
/// where the loss can, a slice of their rows at a time. A closure of the whole logits is one.
pub trait ScoreLogits {
    /// Loss sum and token count of the batch's logits (b, t, vocab).
    fn whole(&mut self, logits: &Tensor) -> Result<(Tensor, Tensor)>;

    /// Whether [`ScoreLogits::rows`] scores a slice of rows; false unless overridden.
    fn scores_rows(&self) -> bool {
        false
    }

    /// Loss sum and token count of a slice of the batch's logits; summed over all slices,
    /// what [`ScoreLogits::whole`] gives. An error unless [`ScoreLogits::scores_rows`].
    fn rows(&mut self, rows: &LogitRows<'_>) -> Result<(Tensor, Tensor)> {
        let _ = rows;
        Err(crate::Error::Unsupported(format!(
            "{} scores only a batch's whole logits",
            std::any::type_name::<Self>()
        )))
    }
}

impl<F: FnMut(&Tensor) -> Result<(Tensor, Tensor)>> ScoreLogits for F {
    fn whole(&mut self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        self(logits)
    }
}

/// The tokenizer's special ids, which a model's Hugging Face config names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
}

/// The plain training pass: `forward`, the loss, and `backward` of the loss sum, keeping every
/// activation until backward.
pub fn forward_then_backward<M: Model + ?Sized>(
    model: &M,
    input: &M::Input,
    loss: &mut dyn ScoreLogits,
) -> Result<(Tensor, Tensor)> {
    let logits = model.forward(input)?;
    let (sum, count) = loss.whole(&logits)?;
    sum.f_backward()?;
    Ok((sum.f_detach()?, count))
}

/// Checks, before step 1, that the tokenizer's ids and the sequence length fit the model;
/// each error names both numbers.
pub fn check_fits<T, M>(tokenizer: &T, model: &M, seq_len: usize) -> Result<()>
where
    T: crate::Tokenizer + ?Sized,
    M: Model + ?Sized,
{
    let vocab = tokenizer.vocab_size() as i64;
    if vocab > model.vocab_size() {
        return Err(crate::Error::Mismatch(format!(
            "tokenizer vocab {vocab} does not fit model vocab {} (experiment field `model`)",
            model.vocab_size()
        )));
    }
    if seq_len as i64 > model.max_seq_len() {
        return Err(crate::Error::Mismatch(format!(
            "training.seq_len {seq_len} exceeds the model's max positions {}: lower \
             training.seq_len, or raise the model's max_position_embeddings (a Llama takes at \
             least the tokenizer's max_len, e.g. bpe.max_len)",
            model.max_seq_len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{BpeConfig, BpeTokenizer, Tokenizer};

    #[test]
    fn tokenizer_and_seq_len_must_fit_the_model() -> Result<()> {
        let docs: Vec<String> = (0..50)
            .map(|i| format!("a story about the number {i}"))
            .collect();
        let config = BpeConfig {
            vocab_size: 300,
            ..BpeConfig::default()
        };
        let tokenizer = BpeTokenizer::train(&config, docs.iter())?;
        let small = LlamaConfig {
            vocab_size: 100,
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            ..LlamaConfig::tiny()
        };
        let model = Llama::new(small, Device::Cpu)?;
        let err = check_fits(&tokenizer, &model, 64)
            .expect_err("vocab too large")
            .to_string();
        assert!(
            err.contains(&format!("tokenizer vocab {}", tokenizer.vocab_size()))
                && err.contains("model vocab 100"),
            "{err}"
        );
        let fitted = Llama::new(model.config().with_tokenizer(&tokenizer), Device::Cpu)?;
        check_fits(&tokenizer, &fitted, 512)?;
        let err = check_fits(&tokenizer, &fitted, 1024)
            .expect_err("seq too long")
            .to_string();
        assert!(err.contains("seq_len 1024") && err.contains("512"), "{err}");
        Ok(())
    }
}
