//! Building one of libtorch's optimizers over a model's parameters, with weight decay off for
//! the no-decay group.

use tch::COptimizer;

use super::NO_DECAY_GROUP;
use crate::model::Parameters;
use crate::{Error, Result};

/// Adds every trainable parameter to `optimizer` in its group and turns weight decay off for
/// [`NO_DECAY_GROUP`] when the model has such parameters.
pub(crate) fn add_parameters(optimizer: &mut COptimizer, params: &Parameters<'_>) -> Result<()> {
    let variables = params
        .var_store()
        .variables_
        .lock()
        .map_err(|_| Error::Training("the model's variable store is poisoned".into()))?;
    let mut no_decay = false;
    for var in &variables.trainable_variables {
        optimizer.add_parameters(&var.tensor, var.group)?;
        no_decay |= var.group == NO_DECAY_GROUP;
    }
    if no_decay {
        optimizer.set_weight_decay_group(NO_DECAY_GROUP, 0.0)?;
    }
    Ok(())
}

/// Zeroes the gradients of every parameter `optimizer` holds.
pub(crate) fn zero_grad(optimizer: &COptimizer) -> Result<()> {
    Ok(optimizer.zero_grad()?)
}
