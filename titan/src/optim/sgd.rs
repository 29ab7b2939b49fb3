//! SGD with momentum (optionally Nesterov) through libtorch's `torch::optim::SGD`.

use serde::{Deserialize, Serialize};
use tch::COptimizer;

use super::{Optimizer, libtorch};
use crate::model::Parameters;
use crate::{Error, Result};

/// Settings of [`Sgd`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// L2 weight decay (not applied to the no-decay group).
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// SGD with momentum through libtorch.
pub struct Sgd {
    inner: COptimizer,
    config: SgdConfig,
}

impl std::fmt::Debug for Sgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sgd").field("config", &self.config).finish()
    }
}

impl Sgd {
    /// Builds SGD over `params`.
    pub fn new(params: Parameters<'_>, config: SgdConfig) -> Result<Self> {
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::config(
                "SgdConfig.nesterov",
                true,
                format!(
                    "needs momentum > 0 and dampening 0 (got momentum {}, dampening {})",
                    config.momentum, config.dampening
                ),
            ));
        }
        let mut inner = COptimizer::sgd(
            config.lr,
            config.momentum,
            config.dampening,
            config.weight_decay,
            config.nesterov,
        )?;
        libtorch::add_parameters(&mut inner, &params)?;
        Ok(Self { inner, config })
    }
}

impl Optimizer for Sgd {
    fn zero_grad(&mut self) -> Result<()> {
        libtorch::zero_grad(&self.inner)
    }

    fn step(&mut self) -> Result<()> {
        Ok(self.inner.step()?)
    }

    fn set_lr(&mut self, lr: f64) {
        let _ = self.inner.set_learning_rate(lr);
    }

    fn base_lr(&self) -> f64 {
        self.config.lr
    }
}
