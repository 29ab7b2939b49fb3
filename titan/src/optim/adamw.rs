//! AdamW (Loshchilov & Hutter 2019) through libtorch's fused kernel (`torch._fused_adamw_`, on
//! CPU and CUDA), with weight decay off for norm weights, biases and embeddings, and its state
//! (moments and step counts) held by titan so it saves and restores.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Optimizer;
use super::params::{self, Param, SavedState};
use crate::checkpoint::{StateDict, Stateful};
use crate::model::Parameters;
use crate::shim::{self, AdamWLists};
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

impl AdamWConfig {
    /// Checks every value's range; an error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        let (beta1, beta2) = self.betas;
        if ![beta1, beta2].iter().all(|b| (0.0..1.0).contains(b)) {
            return Err(Error::config(
                "AdamWConfig.betas",
                format!("[{beta1}, {beta2}]"),
                "each must be within [0, 1)",
            ));
        }
        params::positive("AdamWConfig.eps", self.eps)?;
        params::non_negative("AdamWConfig.lr", self.lr)?;
        params::non_negative("AdamWConfig.weight_decay", self.weight_decay)
    }
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

/// AdamW through libtorch's fused kernel: one launch per group of parameters sharing a device,
/// dtype and weight decay, with no host sync (the step counts and the rate live on the device).
#[derive(Debug)]
pub struct AdamW {
    params: Vec<Param>,
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
    /// One step count per parameter: views into one buffer per group, so a step increments
    /// them in one call (every parameter steps together).
    steps: Vec<Tensor>,
    groups: Vec<Group>,
    config: AdamWConfig,
    lr: f64,
    lr_error: Option<String>,
}

/// Parameters updated by one fused call.
#[derive(Debug)]
struct Group {
    members: Vec<usize>,
    weight_decay: f64,
    steps: Tensor,
    lr: Tensor,
}

impl AdamW {
    /// Builds AdamW over `params`; parameters of the model's no-decay group
    /// ([`crate::model::ParamGroup::NoDecay`]) take no weight decay.
    pub fn new(params: Parameters, config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        let params = params::collect(params);
        let mut steps: Vec<Option<Tensor>> = params.iter().map(|_| None).collect();
        let mut groups = Vec::new();
        for group in params::fused_groups(&params) {
            let opts = (Kind::Float, group.device);
            let buffer = Tensor::f_zeros([group.members.len() as i64], opts)?;
            for (j, &i) in group.members.iter().enumerate() {
                steps[i] = Some(buffer.f_select(0, j as i64)?);
            }
            groups.push(Group {
                weight_decay: if group.decay {
                    config.weight_decay
                } else {
                    0.0
                },
                members: group.members,
                steps: buffer,
                lr: Tensor::f_full([], config.lr, opts)?,
            });
        }
        let zeros = |p: &Param| Tensor::f_zeros_like(&p.tensor);
        Ok(Self {
            exp_avgs: params.iter().map(zeros).collect::<Result<_, _>>()?,
            exp_avg_sqs: params.iter().map(zeros).collect::<Result<_, _>>()?,
            steps: steps.into_iter().flatten().collect(),
            params,
            groups,
            lr: config.lr,
            config,
            lr_error: None,
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
}

impl AdamW {
    /// One update; with `found_inf` set (on the device) the kernel changes nothing and the
    /// step counts stay, so a skipped step leaves no trace.
    fn update(&mut self, found_inf: Option<&Tensor>) -> Result<()> {
        if let Some(why) = self.lr_error.take() {
            return Err(Error::Training(format!("setting AdamW's rate: {why}")));
        }
        let _guard = tch::no_grad_guard();
        // 1 for a step taken, 1 - found_inf for one the device may skip (once, for every group).
        let taken = found_inf
            .map(|inf| inf.f_neg()?.f_add_scalar(1.0))
            .transpose()?;
        for group in &self.groups {
            let live = params::live_grads(&self.params, &group.members);
            if live.is_empty() {
                continue;
            }
            let members: Vec<usize> = live.iter().map(|(j, _)| group.members[*j]).collect();
            let tensors: Vec<&Tensor> = members.iter().map(|&i| &self.params[i].tensor).collect();
            let grads: Vec<&Tensor> = live.iter().map(|(_, g)| g).collect();
            let (m, v, s) = (
                pick(&self.exp_avgs, &members),
                pick(&self.exp_avg_sqs, &members),
                pick(&self.steps, &members),
            );
            // The kernel reads the incremented counts; only the stepped parameters count, and
            // a skipped step (`found_inf` 1) counts 1 - 1 = 0.
            let all = live.len() == group.members.len();
            let count = |sign: f64| -> Result<()> {
                let targets: Vec<Tensor> = if all {
                    vec![group.steps.shallow_clone()]
                } else {
                    s.iter().map(|step| (*step).shallow_clone()).collect()
                };
                for mut t in targets {
                    let _ = match &taken {
                        None => t.f_add_scalar_(sign)?,
                        Some(taken) => t.f_add_(&taken.f_mul_scalar(sign)?)?,
                    };
                }
                Ok(())
            };
            count(1.0)?;
            let stepped = shim::fused_adamw(
                &AdamWLists {
                    params: &tensors,
                    grads: &grads,
                    exp_avgs: &m,
                    exp_avg_sqs: &v,
                    steps: &s,
                },
                &group.lr,
                self.config.betas,
                group.weight_decay,
                self.config.eps,
                found_inf,
            );
            if let Err(e) = stepped {
                // The kernel failed before touching anything: take the counts back.
                count(-1.0)?;
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The tensors of `list` at `indices`.
fn pick<'t>(list: &'t [Tensor], indices: &[usize]) -> Vec<&'t Tensor> {
    indices.iter().map(|&i| &list[i]).collect()
}

impl Optimizer for AdamW {
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
        if lr == self.lr && self.lr_error.is_none() {
            return;
        }
        // Filled on the device, outside any captured step. A failure (only a broken device
        // does that) surfaces at the next eager `step`; a replayed step then fails too.
        let filled = self
            .groups
            .iter_mut()
            .try_for_each(|g| g.lr.f_fill_(lr).map(drop));
        match filled {
            Ok(()) => {
                self.lr = lr;
                self.lr_error = None;
            }
            Err(e) => self.lr_error = Some(e.to_string()),
        }
    }

    fn base_lr(&self) -> f64 {
        self.config.lr
    }

    fn capturable(&self) -> bool {
        // The rate and step counts are device tensors, and a step never reads them back.
        true
    }
}

/// Its moments and step counts, by parameter name.
impl Stateful for AdamW {
    fn state_dict(&self) -> Result<StateDict> {
        let mut state = Vec::with_capacity(3 * self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            state.push((
                format!("{}.exp_avg", p.name),
                self.exp_avgs[i].shallow_clone(),
            ));
            state.push((
                format!("{}.exp_avg_sq", p.name),
                self.exp_avg_sqs[i].shallow_clone(),
            ));
            state.push((format!("{}.step", p.name), self.steps[i].shallow_clone()));
        }
        Ok(StateDict::of_tensors(state))
    }

    fn load_state_dict(&mut self, state: StateDict) -> Result<()> {
        let mut saved = SavedState::new("AdamW", state.tensors);
        for (i, p) in self.params.iter().enumerate() {
            saved.take(&format!("{}.exp_avg", p.name), &self.exp_avgs[i])?;
            saved.take(&format!("{}.exp_avg_sq", p.name), &self.exp_avg_sqs[i])?;
            saved.take(&format!("{}.step", p.name), &self.steps[i])?;
        }
        saved.finish()
    }
}
