//! Sampling continuations from a causal language model (temperature and top-k).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Model;
use crate::Result;
use crate::batch::TokenIds;

/// How to sample new tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateConfig {
    /// Number of tokens to add at most.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    /// Sample among the `top_k` most likely tokens only; 0 means all.
    pub top_k: i64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 120,
            temperature: 0.8,
            top_k: 40,
        }
    }
}

/// Extends `prompt` token by token until `eos` or `max_new_tokens`, returning only the new ids.
/// Recomputes the whole window each step (no KV cache): enough for end-of-run samples.
pub fn generate<M: Model<Input = TokenIds>>(
    model: &M,
    prompt: &[i64],
    eos: Option<i64>,
    config: &GenerateConfig,
) -> Result<Vec<i64>> {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let window = model.max_seq_len() as usize;
    let mut ids = prompt.to_vec();
    let mut new = Vec::new();
    for _ in 0..config.max_new_tokens {
        let start = ids.len().saturating_sub(window);
        let input = Tensor::f_from_slice(&ids[start..])?
            .f_to(device)?
            .f_unsqueeze(0)?;
        let logits = model.forward(&TokenIds(input))?; // (1, t, vocab)
        let last = logits
            .f_select(1, -1)?
            .f_squeeze_dim(0)?
            .f_to_kind(Kind::Float)?;
        let next = sample(&last, config)?;
        if Some(next) == eos {
            break;
        }
        ids.push(next);
        new.push(next);
    }
    Ok(new)
}

fn sample(logits: &Tensor, config: &GenerateConfig) -> Result<i64> {
    if config.temperature <= 0.0 {
        return Ok(logits.f_argmax(-1, false)?.f_int64_value(&[])?);
    }
    let scaled = logits.f_div_scalar(config.temperature)?;
    let vocab = scaled.size().first().copied().unwrap_or(0);
    let k = if config.top_k > 0 {
        config.top_k.min(vocab)
    } else {
        vocab
    };
    let (values, indices) = scaled.f_topk(k, -1, true, true)?;
    let probs = values.f_softmax(-1, Kind::Float)?;
    let choice = probs.f_multinomial(1, false)?;
    Ok(indices.f_gather(0, &choice, false)?.f_int64_value(&[0])?)
}
