//! Adafactor (Shazeer & Stern 2018) written in titan, following `torch.optim.Adafactor`:
//! factored second moments (a row and a column statistic per matrix instead of a full
//! matrix), relative step sizes and update clipping. Every value stays on the device: no
//! host syncs in a step.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Optimizer;
use super::params::{self, Param, SavedState};
use crate::checkpoint::{StateDict, Stateful};
use crate::model::Parameters;
use crate::{Error, Result};

/// Settings of [`Adafactor`], named as in `torch.optim.Adafactor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdafactorConfig {
    /// Upper bound of the relative step size `min(lr, 1/√t)`.
    pub lr: f64,
    /// Decay of the second-moment averaging: `1 − β₂ₜ = t^beta2_decay`.
    pub beta2_decay: f64,
    /// Floor of the second-moment estimate (squared before use); `None`: the dtype's epsilon.
    pub eps1: Option<f64>,
    /// Floor of a parameter's RMS when scaling its step.
    pub eps2: f64,
    /// Update clipping threshold `d`: an update's RMS is scaled down to at most this.
    pub d: f64,
    /// Decoupled weight decay (not applied to the model's no-decay group).
    pub weight_decay: f64,
}

impl AdafactorConfig {
    /// Checks every value's range; an error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        if self.beta2_decay.is_nan() || self.beta2_decay >= 0.0 {
            return Err(Error::config(
                "AdafactorConfig.beta2_decay",
                self.beta2_decay,
                "must be negative (the averaging must forget)",
            ));
        }
        params::positive("AdafactorConfig.lr", self.lr)?;
        params::positive("AdafactorConfig.d", self.d)?;
        params::positive("AdafactorConfig.eps2", self.eps2)?;
        params::non_negative("AdafactorConfig.weight_decay", self.weight_decay)?;
        if let Some(eps1) = self.eps1 {
            params::positive("AdafactorConfig.eps1", eps1)?;
        }
        Ok(())
    }
}

impl Default for AdafactorConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            beta2_decay: -0.8,
            eps1: None,
            eps2: 1e-3,
            d: 1.0,
            weight_decay: 0.0,
        }
    }
}

/// The second-moment statistics of one parameter.
#[derive(Debug)]
enum Moments {
    /// Matrices (and higher): row means (…, r, 1) and column means (…, 1, c) of g².
    Factored { row: Tensor, col: Tensor },
    /// Vectors and scalars: the full average of g².
    Full(Tensor),
}

/// Adafactor over a model's parameters.
#[derive(Debug)]
pub struct Adafactor {
    params: Vec<Param>,
    moments: Vec<Moments>,
    config: AdafactorConfig,
    lr: f64,
    step: u64,
}

impl Adafactor {
    /// Adafactor over `params`; the factored statistics take `rows + columns` numbers per
    /// matrix. Parameters of the model's no-decay group take no weight decay.
    pub fn new(params: Parameters, config: AdafactorConfig) -> Result<Self> {
        config.validate()?;
        let params = params::collect(params);
        let mut moments = Vec::with_capacity(params.len());
        for Param { tensor: p, .. } in &params {
            let size = p.size();
            let opts = (Kind::Float, p.device());
            moments.push(if size.len() >= 2 {
                let mut row = size.clone();
                let mut col = size.clone();
                let n = size.len();
                row[n - 1] = 1;
                col[n - 2] = 1;
                Moments::Factored {
                    row: Tensor::f_zeros(&row, opts)?,
                    col: Tensor::f_zeros(&col, opts)?,
                }
            } else {
                Moments::Full(Tensor::f_zeros(&size, opts)?)
            });
        }
        Ok(Self {
            params,
            moments,
            lr: config.lr,
            config,
            step: 0,
        })
    }

    /// Numbers held as optimizer state (for comparing with AdamW's two per parameter).
    pub fn state_numel(&self) -> i64 {
        self.moments
            .iter()
            .map(|m| match m {
                Moments::Factored { row, col } => (row.numel() + col.numel()) as i64,
                Moments::Full(v) => v.numel() as i64,
            })
            .sum()
    }

    /// One parameter's update. With `keep` (a [`Keep`] whose flag is off on the device), the
    /// update changes nothing: the gradient reads as zero, the moments' averaging weight and the
    /// weight decay as none, so nothing NaN reaches the parameter or its moments.
    fn update_one(
        p: &mut Tensor,
        moments: &mut Moments,
        c: &AdafactorConfig,
        lr: f64,
        t: f64,
        decay: bool,
        keep: Option<&Keep>,
    ) -> Result<()> {
        let grad = p.grad();
        if !grad.defined() {
            return Ok(());
        }
        let (grad, keep) = match keep {
            Some(Keep { flag, weight }) => (
                grad.f_where_self(flag, &grad.f_zeros_like()?)?,
                Some(weight),
            ),
            None => (grad, None),
        };
        // `lerp_` toward `target` by `weight`, scaled to 0 for a skipped step.
        let lerp = |m: &mut Tensor, target: &Tensor, weight: f64| -> Result<()> {
            match &keep {
                None => drop(m.f_lerp_(target, weight)?),
                Some(keep) => drop(m.f_lerp_tensor_(target, &keep.f_mul_scalar(weight)?)?),
            }
            Ok(())
        };
        let eps1 = c.eps1.unwrap_or(f64::from(f32::EPSILON));
        let one_minus_beta2 = t.powf(c.beta2_decay);
        let rho = lr.min(1.0 / t.sqrt());
        // alpha = max(eps2, RMS(p)) · rho, as a device scalar.
        let numel = p.numel() as f64;
        let alpha = p
            .f_norm()?
            .f_div_scalar(numel.sqrt())?
            .f_clamp_min(c.eps2)?
            .f_mul_scalar(rho)?;
        if decay && c.weight_decay != 0.0 {
            match &keep {
                None => drop(p.f_mul_scalar_(1.0 - lr * c.weight_decay)?),
                Some(keep) => {
                    let factor = keep.f_mul_scalar(-lr * c.weight_decay)?.f_add_scalar(1.0)?;
                    drop(p.f_mul_(&factor)?);
                }
            }
        }
        let estimate = match moments {
            Moments::Factored { row, col } => {
                let n = grad.dim() as i64;
                let sq = grad.f_square()?;
                let row_mean = sq.f_mean_dim(n - 1, true, Kind::Float)?;
                let col_mean = sq.f_mean_dim(n - 2, true, Kind::Float)?;
                lerp(row, &row_mean, one_minus_beta2)?;
                lerp(col, &col_mean, one_minus_beta2)?;
                let row_scale = row
                    .f_mean_dim(n - 2, true, Kind::Float)?
                    .f_clamp_min(eps1)?;
                row.f_matmul(col)?.f_div(&row_scale)?
            }
            Moments::Full(v) => {
                lerp(v, &grad.f_square()?, one_minus_beta2)?;
                v.shallow_clone() // read only: the clamp below allocates
            }
        };
        let update = estimate.f_clamp_min(eps1 * eps1)?.f_rsqrt()?.f_mul(&grad)?;
        // Clip: divide by max(1, RMS(update) / d).
        let denom = update
            .f_norm()?
            .f_div_scalar(numel.sqrt() * c.d)?
            .f_clamp_min(1.0)?;
        let step = update.f_mul(&alpha.f_div(&denom)?)?;
        let _ = p.f_sub_(&step)?;
        Ok(())
    }
}

/// Whether a step is taken, on the device: as a bool and as a 0/1 float weight.
struct Keep {
    flag: Tensor,
    weight: Tensor,
}

impl Keep {
    /// Taken unless `skip` is set.
    fn unless(skip: &Tensor) -> Result<Self> {
        let flag = skip.f_logical_not()?;
        let weight = flag.f_to_kind(Kind::Float)?;
        Ok(Self { flag, weight })
    }
}

impl Adafactor {
    /// One step over every parameter; with `skip` (a bool scalar on the device) set it changes
    /// nothing. The host's step count counts a skipped step too (it sets the averaging and
    /// step-size schedules).
    fn update(&mut self, skip: Option<&Tensor>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let keep = skip.map(Keep::unless).transpose()?;
        self.step += 1;
        let t = self.step as f64;
        for (p, moments) in self.params.iter_mut().zip(&mut self.moments) {
            Self::update_one(
                &mut p.tensor,
                moments,
                &self.config,
                self.lr,
                t,
                p.decay,
                keep.as_ref(),
            )?;
        }
        Ok(())
    }
}

impl Optimizer for Adafactor {
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
        let skip = found_inf.f_gt(0.0)?;
        self.update(Some(&skip))?;
        Ok(true)
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn base_lr(&self) -> f64 {
        self.config.lr
    }
}

/// Its (factored) second moments, by parameter name, and its step count.
impl Stateful for Adafactor {
    fn state_dict(&self) -> Result<StateDict> {
        let mut state = vec![(
            "step".to_string(),
            Tensor::f_from_slice(&[self.step as i64])?,
        )];
        for (Param { name, .. }, moments) in self.params.iter().zip(&self.moments) {
            match moments {
                Moments::Factored { row, col } => {
                    state.push((format!("{name}.row"), row.shallow_clone()));
                    state.push((format!("{name}.col"), col.shallow_clone()));
                }
                Moments::Full(v) => state.push((format!("{name}.v"), v.shallow_clone())),
            }
        }
        Ok(StateDict::of_tensors(state))
    }

    fn load_state_dict(&mut self, state: StateDict) -> Result<()> {
        let mut saved = SavedState::new("Adafactor", state.tensors);
        let step = Tensor::f_zeros([1], (Kind::Int64, tch::Device::Cpu))?;
        saved.take("step", &step)?;
        for (Param { name, .. }, moments) in self.params.iter().zip(&self.moments) {
            match moments {
                Moments::Factored { row, col } => {
                    saved.take(&format!("{name}.row"), row)?;
                    saved.take(&format!("{name}.col"), col)?;
                }
                Moments::Full(v) => saved.take(&format!("{name}.v"), v)?,
            }
        }
        saved.finish()?;
        self.step = step.f_int64_value(&[0])? as u64;
        Ok(())
    }
}
