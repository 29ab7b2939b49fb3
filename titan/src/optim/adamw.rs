//! AdamW (Loshchilov & Hutter 2019) through libtorch's `torch::optim::AdamW`, with weight decay
//! off for norm weights, biases and embeddings.

use serde::{Deserialize, Serialize};
use tch::{COptimizer, Tensor};

use super::{Optimizer, libtorch};
use crate::model::Parameters;
use crate::{Error, Result};

/// Settings of [`AdamW`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Exponential decay rates of the first and second moments.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Decoupled weight decay (not applied to the no-decay group).
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
    inner: COptimizer,
    config: AdamWConfig,
    lr: f64,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("lr", &self.lr)
            .finish()
    }
}

impl AdamW {
    /// Builds AdamW over `params`; parameters of the model's no-decay group
    /// ([`super::NO_DECAY_GROUP`]) take no weight decay.
    pub fn new(params: Parameters<'_>, config: AdamWConfig) -> Result<Self> {
        let (beta1, beta2) = config.betas;
        for (name, beta) in [
            ("AdamWConfig.betas.0", beta1),
            ("AdamWConfig.betas.1", beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::config(name, beta, "must be within [0, 1)"));
            }
        }
        let mut inner = COptimizer::adamw(
            config.lr,
            beta1,
            beta2,
            config.weight_decay,
            config.eps,
            false,
        )?;
        libtorch::add_parameters(&mut inner, &params)?;
        Ok(Self {
            inner,
            lr: config.lr,
            config,
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
}

impl Optimizer for AdamW {
    fn zero_grad(&mut self) -> Result<()> {
        libtorch::zero_grad(&self.inner)
    }

    fn step(&mut self) -> Result<()> {
        Ok(self.inner.step()?)
    }

    fn set_lr(&mut self, lr: f64) {
        // Setting a rate on a built optimizer cannot fail for AdamW; keep the last good one.
        if self.inner.set_learning_rate(lr).is_ok() {
            self.lr = lr;
        }
    }

    fn base_lr(&self) -> f64 {
        self.config.lr
    }

    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Err(Error::Training(
            "AdamW's moments live inside libtorch's optimizer, which tch does not expose; \
             saving them needs titan's planned C++ shim"
                .into(),
        ))
    }
}
