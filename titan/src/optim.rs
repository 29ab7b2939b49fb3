//! The `Optimizer` role, built by a factory that receives the model's parameters, and AdamW
//! over libtorch's own implementation.

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};

use crate::Result;
use crate::model::Parameters;

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

/// Settings of [`AdamW`] (Loshchilov & Hutter 2019).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Exponential decay rates of the first and second moments.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.95),
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW through libtorch's `torch::optim::AdamW`.
pub struct AdamW {
    inner: nn::Optimizer,
    config: AdamWConfig,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .finish()
    }
}

impl AdamW {
    /// Builds AdamW over `params`.
    pub fn new(params: Parameters<'_>, config: AdamWConfig) -> Result<Self> {
        let (beta1, beta2) = config.betas;
        let inner = nn::adamw(beta1, beta2, config.weight_decay)
            .eps(config.eps)
            .build(params.var_store(), config.lr)?;
        Ok(Self { inner, config })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
}

impl Optimizer for AdamW {
    fn zero_grad(&mut self) -> Result<()> {
        self.inner.zero_grad();
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        self.inner.step();
        Ok(())
    }

    fn set_lr(&mut self, lr: f64) {
        self.inner.set_lr(lr);
    }

    fn base_lr(&self) -> f64 {
        self.config.lr
    }
}
