//! The `Optimizer` role, built by a factory that receives the model's parameters: AdamW and SGD
//! through libtorch's fused kernels, and Adafactor written in titan; every one's state saves
//! and restores through [`Stateful`].

mod adafactor;
mod adamw;
mod params;
mod sgd;

pub use adafactor::{Adafactor, AdafactorConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use sgd::{Sgd, SgdConfig};

use std::path::Path;

use tch::Tensor;

use crate::checkpoint::{StateDict, Stateful};
use crate::{Error, Result};

/// Updates parameters from their gradients.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an optimizer",
    label = "an optimizer goes here",
    note = "an optimizer implements `titan::Optimizer` (step, zero_grad, set_lr) and is built from the model's parameters"
)]
pub trait Optimizer {
    /// Clears every parameter's gradient.
    fn zero_grad(&mut self) -> Result<()>;
    /// Applies one update.
    fn step(&mut self) -> Result<()>;
    /// Sets the learning rate of every parameter group.
    fn set_lr(&mut self, lr: f64);
    /// The learning rate the schedules scale (the configured peak).
    fn base_lr(&self) -> f64;
    /// Whether [`Optimizer::step`] can be recorded once in a CUDA graph and replayed: it reads
    /// its learning rate and step count from device tensors, never from host values baked in
    /// at capture, and never syncs. The default is false, and the trainer then runs eagerly.
    fn capturable(&self) -> bool {
        false
    }
    /// Applies one update unless `found_inf` (a float scalar on the parameters' device: 1 when
    /// this step's loss or gradients are NaN or infinite, else 0) is set, deciding on the
    /// device with no host sync: a skipped step changes no weight and no state. Returns
    /// whether it can skip; the default cannot: it applies [`Optimizer::step`] and returns
    /// false, and the trainer then stops the run at its next log point instead.
    fn step_unless(&mut self, found_inf: &Tensor) -> Result<bool> {
        let _ = found_inf;
        self.step()?;
        Ok(false)
    }
    /// The tensors [`Optimizer::step`] updates (shallow clones), which the trainer checks are
    /// the model's own parameters before step 1; `None` (the default) leaves them unchecked.
    fn updates(&self) -> Option<Vec<Tensor>> {
        None
    }
}

/// Writes `optimizer`'s state (tensors only) to a safetensors file; the file appears whole or
/// not at all.
pub fn save_state<O: Stateful + ?Sized>(optimizer: &O, path: &Path) -> Result<()> {
    let StateDict { tensors, value } = optimizer.state_dict()?;
    if !value.is_null() {
        return Err(Error::Unsupported(format!(
            "{}: a safetensors file holds tensors only, and this optimizer's state has a value \
             too ({value}); save it in a checkpoint instead",
            path.display()
        )));
    }
    let state = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, params::to_host(&t)?)))
        .collect::<Result<Vec<_>>>()?;
    let partial = path.with_extension("partial");
    Tensor::write_safetensors(&state, &partial)?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

/// Restores `optimizer`'s state from a file written by [`save_state`].
pub fn load_state<O: Stateful + ?Sized>(optimizer: &mut O, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no optimizer state here"),
        ));
    }
    let state = Tensor::read_safetensors(path)?;
    optimizer.load_state_dict(StateDict::of_tensors(state))
}
