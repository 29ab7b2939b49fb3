//! The `LrScheduler` role, built by a factory over the optimizer it drives, and linear warmup
//! followed by constant, linear, cosine or square-root decay, over all remaining steps or only
//! the last ones (warmup-stable-decay), with torchtitan's settings.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{StateDict, Stateful};
use crate::optim::Optimizer;
use crate::{Error, Result};

/// Sets the optimizer's learning rate each step; its state (e.g. the steps taken) saves and
/// restores through [`Stateful`], which the experiment's scheduler must implement.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an LR scheduler",
    label = "an LR scheduler goes here",
    note = "an LR scheduler implements `titan::LrScheduler` for one optimizer type (`type Optimizer`)"
)]
pub trait LrScheduler {
    /// The optimizer it drives.
    type Optimizer: Optimizer;
    /// Advances one step and applies the new rate to `optimizer`; returns that rate.
    fn step(&mut self, optimizer: &mut Self::Optimizer) -> f64;
    /// The rate applied by the last call to `step` (the warmup's first rate before any).
    fn last_lr(&self) -> f64;
}

/// What follows the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Stay at the peak.
    Constant,
    /// Linear from the peak to `min_lr_ratio · peak` at the last step.
    Linear,
    /// Half-cosine from the peak to `min_lr_ratio · peak` at the last step.
    Cosine,
    /// `1 − √progress` from the peak to `min_lr_ratio · peak` at the last step.
    Sqrt,
}

/// Settings of [`Warmup`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    /// Steps of linear warmup from `peak / (warmup_steps + 1)` to the peak.
    pub warmup_steps: u64,
    /// Total training steps (where the decay ends).
    pub total_steps: u64,
    /// What follows the warmup.
    pub decay: Decay,
    /// Final rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Decay only over the last `decay_ratio · total_steps` steps, holding the peak between
    /// warmup and decay (warmup-stable-decay, WSD); `None`: decay over all steps after warmup.
    pub decay_ratio: Option<f64>,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            warmup_steps: 100,
            total_steps: 1000,
            decay: Decay::Cosine,
            min_lr_ratio: 0.1,
            decay_ratio: None,
        }
    }
}

/// Linear warmup, then the chosen decay, for optimizer type `O`.
#[derive(Debug)]
pub struct Warmup<O> {
    config: WarmupConfig,
    peak: f64,
    steps: u64,
    last: f64,
    _optimizer: PhantomData<fn(&mut O)>,
}

impl<O: Optimizer> Warmup<O> {
    /// A schedule peaking at `optimizer`'s base rate.
    pub fn new(optimizer: &O, config: WarmupConfig) -> Result<Self> {
        if !(0.0..=1.0).contains(&config.min_lr_ratio) {
            return Err(Error::config(
                "WarmupConfig.min_lr_ratio",
                config.min_lr_ratio,
                "must be within [0, 1]",
            ));
        }
        if let Some(ratio) = config.decay_ratio
            && !(ratio > 0.0 && ratio <= 1.0)
        {
            return Err(Error::config(
                "WarmupConfig.decay_ratio",
                ratio,
                "must be within (0, 1]",
            ));
        }
        let mut s = Self {
            config,
            peak: optimizer.base_lr(),
            steps: 0,
            last: 0.0,
            _optimizer: PhantomData,
        };
        s.last = s.lr_at(0);
        Ok(s)
    }

    /// The rate at step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        let c = &self.config;
        if step < c.warmup_steps {
            return self.peak * (step + 1) as f64 / (c.warmup_steps + 1) as f64;
        }
        // Decay starts after warmup, or, with a decay ratio, that many steps before the end.
        let decay_start = match c.decay_ratio {
            None => c.warmup_steps,
            Some(ratio) => {
                let decay_steps = (c.total_steps as f64 * ratio).round() as u64;
                c.total_steps
                    .saturating_sub(decay_steps)
                    .max(c.warmup_steps)
            }
        };
        if step < decay_start {
            return self.peak;
        }
        // The last step (total_steps - 1) is the one that reaches the floor.
        let span = c.total_steps.saturating_sub(decay_start + 1).max(1) as f64;
        let progress = ((step - decay_start) as f64 / span).min(1.0);
        let floor = c.min_lr_ratio;
        let factor = match c.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - (1.0 - floor) * progress,
            Decay::Cosine => {
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Decay::Sqrt => floor + (1.0 - floor) * (1.0 - progress.sqrt()),
        };
        self.peak * factor
    }
}

impl<O: Optimizer> LrScheduler for Warmup<O> {
    type Optimizer = O;

    fn step(&mut self, optimizer: &mut O) -> f64 {
        self.last = self.lr_at(self.steps);
        optimizer.set_lr(self.last);
        self.steps += 1;
        self.last
    }

    fn last_lr(&self) -> f64 {
        self.last
    }
}

/// The steps taken; the settings come from the run's configuration.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmupState {
    steps: u64,
}

impl<O: Optimizer> Stateful for Warmup<O> {
    fn state_dict(&self) -> Result<StateDict> {
        StateDict::of_value(&WarmupState { steps: self.steps })
    }

    fn load_state_dict(&mut self, state: StateDict) -> Result<()> {
        let WarmupState { steps } = state.value_as("the Warmup LR scheduler")?;
        self.steps = steps;
        self.last = self.lr_at(steps.saturating_sub(1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(f64);
    impl Optimizer for Fake {
        fn zero_grad(&mut self) -> Result<()> {
            Ok(())
        }
        fn step(&mut self) -> Result<()> {
            Ok(())
        }
        fn set_lr(&mut self, lr: f64) {
            self.0 = lr;
        }
        fn base_lr(&self) -> f64 {
            1.0
        }
    }

    #[test]
    fn warmup_then_cosine_reaches_the_floor() -> Result<()> {
        let mut opt = Fake(0.0);
        let config = WarmupConfig {
            warmup_steps: 4,
            total_steps: 14,
            decay: Decay::Cosine,
            min_lr_ratio: 0.1,
            decay_ratio: None,
        };
        let mut s = Warmup::new(&opt, config)?;
        let lrs: Vec<f64> = (0..14).map(|_| s.step(&mut opt)).collect();
        assert!((lrs[0] - 0.2).abs() < 1e-12);
        assert!((lrs[4] - 1.0).abs() < 1e-12, "peak right after warmup");
        assert!(lrs.windows(2).skip(4).all(|w| w[1] < w[0]));
        assert!(
            (lrs[13] - 0.1).abs() < 1e-12,
            "the last of 14 steps is at the floor"
        );
        assert_eq!(opt.0, lrs[13]);
        Ok(())
    }

    #[test]
    fn warmup_stable_decay_holds_the_peak_then_decays_at_the_end() -> Result<()> {
        let mut opt = Fake(0.0);
        let config = WarmupConfig {
            warmup_steps: 2,
            total_steps: 20,
            decay: Decay::Linear,
            min_lr_ratio: 0.0,
            decay_ratio: Some(0.25),
        };
        let mut s = Warmup::new(&opt, config.clone())?;
        let lrs: Vec<f64> = (0..20).map(|_| s.step(&mut opt)).collect();
        // Warmup 0..2, stable 2..15, decay over the last 5 steps (15..20) to 0 on step 19.
        assert!(lrs[..2].iter().all(|&lr| lr < 1.0));
        assert!(lrs[2..=15].iter().all(|&lr| lr == 1.0), "{lrs:?}");
        assert!(lrs[15..].windows(2).all(|w| w[1] < w[0]), "{lrs:?}");
        assert_eq!(lrs[19], 0.0);
        let sqrt = Warmup::new(
            &opt,
            WarmupConfig {
                decay: Decay::Sqrt,
                ..config.clone()
            },
        )?;
        assert!((sqrt.lr_at(16) - (1.0 - 0.25f64.sqrt())).abs() < 1e-12);
        let bad = Warmup::new(
            &opt,
            WarmupConfig {
                decay_ratio: Some(1.5),
                ..config
            },
        );
        let err = bad.expect_err("ratio above 1").to_string();
        assert!(err.contains("decay_ratio") && err.contains("1.5"), "{err}");
        Ok(())
    }

    #[test]
    fn restored_step_count_continues_the_schedule() -> Result<()> {
        let mut opt = Fake(0.0);
        let mut a = Warmup::new(&opt, WarmupConfig::default())?;
        for _ in 0..250 {
            a.step(&mut opt);
        }
        let mut b = Warmup::new(&opt, WarmupConfig::default())?;
        b.load_state_dict(a.state_dict()?)?;
        assert_eq!(a.last_lr(), b.last_lr());
        assert_eq!(a.step(&mut opt), b.step(&mut opt));
        Ok(())
    }
}
