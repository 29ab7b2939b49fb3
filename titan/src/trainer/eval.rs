//! Evaluation: the mean loss per counted token over a fixed number of validation batches.

use tch::{Device, Tensor};

use super::contracts::FitsModelInput;
use super::parts::ScoreFn;
use crate::Result;
use crate::batch::Batch;
use crate::data::Dataloader;
use crate::loss::Loss;
use crate::model::Model;

/// Mean loss per counted token of `model` over the next `batches` batches of `data` (no
/// gradients), and the number of tokens counted; an error when it counted none.
pub fn evaluate<M, V, L>(model: &M, data: &mut V, loss: &L, batches: usize) -> Result<(f64, f64)>
where
    M: Model,
    V: Dataloader,
    <V::Batch as Batch>::Input: FitsModelInput<M::Input>,
    L: Loss<<V::Batch as Batch>::Labels>,
{
    let (mean, count) = evaluate_with(
        data,
        batches,
        model.device(),
        &|input| model.forward(input),
        &|logits, labels| loss.loss_sum(logits, labels),
    )?;
    counted_some(count, batches)?;
    Ok((mean, count))
}

/// An error when an evaluation of `batches` batches counted no token (`count`: this process's,
/// or in the trainer every rank's): its loss of 0 would read as a perfect model.
pub(crate) fn counted_some(count: f64, batches: usize) -> Result<()> {
    if count > 0.0 {
        return Ok(());
    }
    Err(crate::Error::Training(format!(
        "the validation loss counted no token in {batches} batches (training.eval_batches): \
         every label is ignored (the loss skips the ignore index, -100); check the validation \
         dataloader's labels"
    )))
}

/// Mean loss per counted token over the next `batches` batches of `data`, and the token count:
/// the core of every evaluation, over an erased forward pass and loss.
pub(crate) fn evaluate_with<V, I, Lab>(
    data: &mut V,
    batches: usize,
    device: Device,
    forward: &dyn Fn(&I) -> Result<Tensor>,
    loss: &ScoreFn<'_, Lab>,
) -> Result<(f64, f64)>
where
    V: Dataloader,
    V::Batch: Batch<Labels = Lab>,
    <V::Batch as Batch>::Input: FitsModelInput<I>,
{
    if batches == 0 {
        return Err(crate::Error::config(
            "training.eval_batches",
            batches,
            "must be at least 1",
        ));
    }
    let _guard = tch::no_grad_guard();
    let (mut sum, mut count) = (0.0, 0.0);
    for _ in 0..batches {
        let (input, labels) = data.next_batch()?.to_device(device)?.into_parts();
        let logits = forward(input.as_model_input())?;
        let (s, c) = loss(&logits, &labels)?;
        sum += s.f_double_value(&[])?;
        count += c.f_double_value(&[])?;
    }
    Ok((sum / f64::max(count, 1.0), count))
}
