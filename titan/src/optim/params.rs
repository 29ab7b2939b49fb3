//! The parameters an optimizer updates, by name, with whether their group (as the model
//! declares it) takes weight decay; and the state helpers every optimizer shares.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::model::{ParamGroup, Parameters};
use crate::{Error, Result};

/// One trainable parameter as an optimizer holds it.
#[derive(Debug)]
pub(crate) struct Param {
    /// Its name in the model.
    pub name: String,
    /// The parameter (shares storage with the model's).
    pub tensor: Tensor,
    /// False for the model's [`ParamGroup::NoDecay`] group (norm weights, biases, embeddings).
    pub decay: bool,
}

/// Shallow clones of `params`' tensors: what an optimizer updates ([`crate::Optimizer::updates`]).
pub(crate) fn tensors(params: &[Param]) -> Vec<Tensor> {
    params.iter().map(|p| p.tensor.shallow_clone()).collect()
}

/// The model's parameters in their (stable, by name) order, each marked with whether its group
/// takes weight decay.
pub(crate) fn collect(params: Parameters) -> Vec<Param> {
    params
        .into_iter()
        .map(|p| Param {
            decay: takes_decay(p.group),
            name: p.name,
            tensor: p.tensor,
        })
        .collect()
}

/// Whether parameters of `group` take weight decay.
pub(crate) fn takes_decay(group: ParamGroup) -> bool {
    match group {
        ParamGroup::Decay => true,
        ParamGroup::NoDecay => false,
    }
}

/// Parameters one fused kernel call updates together: one device, one dtype, one weight-decay
/// setting.
#[derive(Debug)]
pub(crate) struct FusedGroup {
    /// Indices into the parameter list.
    pub members: Vec<usize>,
    /// Whether they take weight decay.
    pub decay: bool,
    /// Their device.
    pub device: Device,
}

/// Splits `params` into [`FusedGroup`]s, in order of first appearance.
pub(crate) fn fused_groups(params: &[Param]) -> Vec<FusedGroup> {
    let mut keys: Vec<(Device, Kind, bool)> = Vec::new();
    let mut groups: Vec<FusedGroup> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let key = (p.tensor.device(), p.tensor.kind(), p.decay);
        match keys.iter().position(|k| *k == key) {
            Some(g) => groups[g].members.push(i),
            None => {
                keys.push(key);
                groups.push(FusedGroup {
                    members: vec![i],
                    decay: p.decay,
                    device: key.0,
                });
            }
        }
    }
    groups
}

/// The gradients of `group`'s members that have one (like PyTorch, an optimizer leaves a
/// parameter without a gradient alone), as (member position, gradient).
pub(crate) fn live_grads(params: &[Param], members: &[usize]) -> Vec<(usize, Tensor)> {
    members
        .iter()
        .enumerate()
        .map(|(j, &i)| (j, params[i].tensor.grad()))
        .filter(|(_, g)| g.defined())
        .collect()
}

/// Zeroes the gradients of `params` in place (keeping their storage, so a captured step can
/// reuse it).
pub(crate) fn zero_grads<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Result<()> {
    for p in params {
        let mut grad = p.grad();
        if grad.defined() {
            let _ = grad.f_detach_()?.f_zero_()?;
        }
    }
    Ok(())
}

/// A saved optimizer state, taken apart by name. Every tensor is checked (name and shape)
/// before any is copied, so a state that does not fit leaves the optimizer as it was.
pub(crate) struct SavedState {
    optimizer: &'static str,
    tensors: HashMap<String, Tensor>,
    copies: Vec<(Tensor, Tensor)>,
}

impl SavedState {
    /// Wraps the tensors `optimizer` (its name, for messages) is restoring.
    pub fn new(optimizer: &'static str, state: Vec<(String, Tensor)>) -> Self {
        Self {
            optimizer,
            tensors: state.into_iter().collect(),
            copies: Vec::new(),
        }
    }

    /// Plans copying the saved `key` into `into`, which must have its shape.
    pub fn take(&mut self, key: &str, into: &Tensor) -> Result<()> {
        let saved = self
            .tensors
            .remove(key)
            .ok_or_else(|| Error::Mismatch(format!("{} state has no `{key}`", self.optimizer)))?;
        if saved.size() != into.size() {
            return Err(Error::Mismatch(format!(
                "{} state `{key}` has shape {:?}, this optimizer's {:?}",
                self.optimizer,
                saved.size(),
                into.size()
            )));
        }
        self.copies.push((into.shallow_clone(), saved));
        Ok(())
    }

    /// Copies every planned tensor, or fails, copying nothing, if a saved tensor was left
    /// over (it names nothing this optimizer holds).
    pub fn finish(self) -> Result<()> {
        if let Some(extra) = self.tensors.keys().min() {
            return Err(Error::Mismatch(format!(
                "{} state has `{extra}`, which names no parameter of this model",
                self.optimizer
            )));
        }
        let _guard = tch::no_grad_guard();
        for (mut into, saved) in self.copies {
            into.f_copy_(&saved)?;
        }
        Ok(())
    }
}

/// Checks that setting `key` (a learning rate, a weight decay) is finite and not negative;
/// NaN is refused too, which `value < 0.0` would let through.
pub(crate) fn non_negative(key: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        return Ok(());
    }
    Err(Error::config(
        key,
        value,
        "must be a finite number of at least 0",
    ))
}

/// Checks that setting `key` (an epsilon) is finite and above 0.
pub(crate) fn positive(key: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(Error::config(key, value, "must be a finite number above 0"))
}

/// A detached copy of `t` on the CPU, for a saved state.
pub(crate) fn to_host(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?.f_to(tch::Device::Cpu)?)
}
