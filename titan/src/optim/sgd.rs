//! SGD with momentum (optionally Nesterov) through libtorch's fused kernel
//! (`torch._fused_sgd_`), with its momentum buffers held by titan so they save and restore.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::Optimizer;
use super::params::{self, FusedGroup, Param, SavedState};
use crate::checkpoint::{StateDict, Stateful};
use crate::model::Parameters;
use crate::shim::{self, SgdStep};
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

impl SgdConfig {
    /// Checks every value's range; an error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::config(
                "SgdConfig.nesterov",
                true,
                format!(
                    "needs momentum > 0 and dampening 0 (got momentum {}, dampening {})",
                    self.momentum, self.dampening
                ),
            ));
        }
        params::non_negative("SgdConfig.momentum", self.momentum)?;
        params::non_negative("SgdConfig.dampening", self.dampening)?;
        params::non_negative("SgdConfig.lr", self.lr)?;
        params::non_negative("SgdConfig.weight_decay", self.weight_decay)
    }
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

/// SGD with momentum through libtorch's fused kernel.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<Param>,
    /// Momentum buffers (none when momentum is 0).
    buffers: Vec<Tensor>,
    groups: Vec<FusedGroup>,
    /// Per group: whether its buffers hold momentum yet (the first step starts them from the
    /// gradients).
    started: Vec<bool>,
    steps: u64,
    config: SgdConfig,
    lr: f64,
}

impl Sgd {
    /// Builds SGD over `params`; parameters of the model's no-decay group
    /// ([`crate::model::ParamGroup::NoDecay`]) take no weight decay.
    pub fn new(params: Parameters, config: SgdConfig) -> Result<Self> {
        config.validate()?;
        let params = params::collect(params);
        let buffers = if config.momentum > 0.0 {
            params
                .iter()
                .map(|p| Tensor::f_zeros_like(&p.tensor))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let groups = params::fused_groups(&params);
        Ok(Self {
            started: vec![false; groups.len()],
            groups,
            params,
            buffers,
            steps: 0,
            lr: config.lr,
            config,
        })
    }
}

impl Sgd {
    /// One update; with `found_inf` set (on the device) the kernel changes nothing. The host's
    /// step count still counts the step, so a skipped first step leaves the momentum buffers
    /// to start from zero instead of from the gradient (the same with no dampening).
    fn update(&mut self, found_inf: Option<&Tensor>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (group, started) in self.groups.iter().zip(&mut self.started) {
            let live = params::live_grads(&self.params, &group.members);
            if live.is_empty() {
                continue;
            }
            let tensors: Vec<&Tensor> = live
                .iter()
                .map(|(j, _)| &self.params[group.members[*j]].tensor)
                .collect();
            let grads: Vec<&Tensor> = live.iter().map(|(_, g)| g).collect();
            let buffers: Vec<&Tensor> = if self.buffers.is_empty() {
                Vec::new()
            } else {
                live.iter()
                    .map(|(j, _)| &self.buffers[group.members[*j]])
                    .collect()
            };
            let step = SgdStep {
                lr: self.lr,
                momentum: self.config.momentum,
                dampening: self.config.dampening,
                weight_decay: if group.decay {
                    self.config.weight_decay
                } else {
                    0.0
                },
                nesterov: self.config.nesterov,
                first: !*started,
            };
            shim::fused_sgd(&tensors, &grads, &buffers, step, found_inf)?;
            *started = true;
        }
        self.steps += 1;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn zero_grad(&mut self) -> Result<()> {
        params::zero_grads(self.params.iter().map(|p| &p.tensor))
    }

    fn updates(&self) -> Option<Vec<Tensor>> {
        Some(params::tensors(&self.params))
    }

    fn step(&mut self) -> Result<()> {
        self.update(None)
    }

    fn step_unless(&mut self, found_inf: &Tensor) -> Result<bool> {
        self.update(Some(found_inf))?;
        Ok(true)
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn base_lr(&self) -> f64 {
        self.config.lr
    }
}

/// Its momentum buffers, by parameter name, and its step count.
impl Stateful for Sgd {
    fn state_dict(&self) -> Result<StateDict> {
        let mut state = vec![(
            "steps".to_string(),
            Tensor::f_from_slice(&[self.steps as i64])?,
        )];
        for (p, buffer) in self.params.iter().zip(&self.buffers) {
            state.push((
                format!("{}.momentum_buffer", p.name),
                buffer.shallow_clone(),
            ));
        }
        Ok(StateDict::of_tensors(state))
    }

    fn load_state_dict(&mut self, state: StateDict) -> Result<()> {
        let mut saved = SavedState::new("SGD", state.tensors);
        let steps = Tensor::f_zeros([1], (tch::Kind::Int64, tch::Device::Cpu))?;
        saved.take("steps", &steps)?;
        for (p, buffer) in self.params.iter().zip(&self.buffers) {
            saved.take(&format!("{}.momentum_buffer", p.name), buffer)?;
        }
        saved.finish()?;
        self.steps = steps.f_int64_value(&[0])? as u64;
        self.started = vec![self.steps > 0; self.groups.len()];
        Ok(())
    }
}
