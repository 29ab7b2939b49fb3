//! The `Optimizer` role, built by a factory that receives the model's parameters: AdamW and SGD
//! over libtorch's implementations, and Adafactor written in titan.

mod adafactor;
mod adamw;
mod libtorch;
mod sgd;

pub use adafactor::{Adafactor, AdafactorConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::Result;

/// The parameter group of weights that take no weight decay (norm weights, biases,
/// embeddings). Models create those variables under `path.set_group(NO_DECAY_GROUP)`.
pub const NO_DECAY_GROUP: usize = 1;

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
}
