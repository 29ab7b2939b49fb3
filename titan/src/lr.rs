//! The `LrScheduler` role, built by a factory over the optimizer it drives, and linear warmup
//! followed by constant, linear, cosine or square-root decay, over all remaining steps or only
//! the last ones (warmup-stable-decay): torchtitan's `linear_warmup_stable_decay`, step for step.

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
    /// The step its schedule ends at, where it has one: the trainer warns when a run goes past
    /// it (by default none).
    fn total_steps(&self) -> Option<u64> {
        None
    }
}

/// What follows the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Stay at the peak.
    Constant,
    /// Linear from the peak towards `min_lr_ratio · peak`.
    Linear,
    /// Half-cosine from the peak towards `min_lr_ratio · peak`.
    Cosine,
    /// `1 − √progress` from the peak towards `min_lr_ratio · peak`.
    Sqrt,
}

/// Settings of [`Warmup`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    /// Steps of linear warmup, from `peak / warmup_steps` on the first step to the peak on the
    /// last (at most `total_steps`: more are cut to it, with a warning, as torchtitan does).
    pub warmup_steps: u64,
    /// Total training steps. The decay ends one step past the last, torchtitan's "virtual last
    /// step": the last step trains at a rate just above `min_lr_ratio · peak`, never at 0.
    pub total_steps: u64,
    /// What follows the warmup.
    pub decay: Decay,
    /// Final rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Decay only over the last `decay_ratio · total_steps` steps (rounded half to even, as
    /// Python's `round`; at most the steps after warmup), holding the peak between warmup and
    /// decay (warmup-stable-decay, WSD); `None`: decay over all steps after warmup.
    pub decay_ratio: Option<f64>,
}

impl WarmupConfig {
    /// Checks every ratio's range; an error names the key and the value (steps out of order
    /// are cut, with a warning, by [`Warmup::new`]).
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(Error::config(
                "WarmupConfig.min_lr_ratio",
                self.min_lr_ratio,
                "must be within [0, 1]",
            ));
        }
        if let Some(ratio) = self.decay_ratio
            && !(ratio > 0.0 && ratio <= 1.0)
        {
            return Err(Error::config(
                "WarmupConfig.decay_ratio",
                ratio,
                "must be within (0, 1]",
            ));
        }
        Ok(())
    }
}

/// titan's defaults: 100 warmup steps of 1000, cosine to 0.1 · peak. Not torchtitan's (200
/// warmup steps, `total_steps` = `training.steps`, linear to 0): set `total_steps` from
/// `training.steps` in the experiment (a run that ends before its schedule is said).
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
    /// The steps of the decay, fixed by `config`.
    decay_steps: u64,
    peak: f64,
    steps: u64,
    last: f64,
    _optimizer: PhantomData<fn(&mut O)>,
}

impl<O: Optimizer> Warmup<O> {
    /// A schedule peaking at `optimizer`'s base rate.
    pub fn new(optimizer: &O, config: WarmupConfig) -> Result<Self> {
        config.validate()?;
        let mut config = config;
        if config.warmup_steps > config.total_steps {
            tracing::warn!(
                "warmup_steps ({}) exceed total_steps ({}): warming up over {} steps",
                config.warmup_steps,
                config.total_steps,
                config.total_steps
            );
            config.warmup_steps = config.total_steps;
        }
        let mut s = Self {
            decay_steps: Self::decay_steps_of(&config),
            config,
            peak: optimizer.base_lr(),
            steps: 0,
            last: 0.0,
            _optimizer: PhantomData,
        };
        s.last = s.lr_at(0);
        Ok(s)
    }

    /// The steps of the decay: the last `decay_ratio · total_steps` (at most all steps after
    /// warmup), or all steps after warmup.
    fn decay_steps_of(c: &WarmupConfig) -> u64 {
        let after_warmup = c.total_steps - c.warmup_steps;
        match c.decay_ratio {
            None => after_warmup,
            Some(ratio) => {
                let decay = (c.total_steps as f64 * ratio).round_ties_even() as u64;
                if decay > after_warmup {
                    tracing::warn!(
                        "warmup ({}) + decay ({decay}) steps exceed total_steps ({}): decaying \
                         over {after_warmup} steps",
                        c.warmup_steps,
                        c.total_steps
                    );
                }
                decay.min(after_warmup)
            }
        }
    }

    /// The rate at step `step` (0-based), as torchtitan's `linear_warmup_stable_decay`.
    pub fn lr_at(&self, step: u64) -> f64 {
        let c = &self.config;
        if step < c.warmup_steps {
            return self.peak * (step + 1) as f64 / c.warmup_steps as f64;
        }
        let decay_steps = self.decay_steps;
        // The stable phase holds one step more than the gap: the "virtual last step" after the
        // last keeps the final rate above the floor.
        let decay_start = c.total_steps + 1 - decay_steps;
        if step < decay_start || decay_steps == 0 {
            return self.peak;
        }
        let progress = ((step + 1 - decay_start) as f64 / decay_steps as f64).min(1.0);
        let floor = c.min_lr_ratio;
        let factor = match c.decay {
            Decay::Constant => 1.0,
            Decay::Linear => floor + (1.0 - floor) * (1.0 - progress),
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

    /// None for a constant rate after warmup: nothing changes at its end.
    fn total_steps(&self) -> Option<u64> {
        (self.config.decay != Decay::Constant).then_some(self.config.total_steps)
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

    fn rates(config: WarmupConfig) -> Result<Vec<f64>> {
        let mut opt = Fake(0.0);
        let steps = config.total_steps;
        let mut s = Warmup::new(&opt, config)?;
        let lrs: Vec<f64> = (0..steps).map(|_| s.step(&mut opt)).collect();
        assert_eq!(
            opt.0,
            *lrs.last().unwrap_or(&0.0),
            "the last rate is applied"
        );
        Ok(lrs)
    }

    fn config(
        total_steps: u64,
        warmup_steps: u64,
        decay_ratio: Option<f64>,
        decay: Decay,
        min_lr_ratio: f64,
    ) -> WarmupConfig {
        WarmupConfig {
            warmup_steps,
            total_steps,
            decay,
            min_lr_ratio,
            decay_ratio,
        }
    }

    /// Every rate equals torchtitan's `linear_warmup_stable_decay` (components/optimizer/
    /// lr_scheduler.py at b5bcd76; the expected values were printed by that function).
    #[test]
    fn rates_match_torchtitan_step_for_step() -> Result<()> {
        let cases: [(WarmupConfig, &[f64]); 6] = [
            // torchtitan's debug model: the last step stays above the floor of 0.
            (
                config(10, 2, Some(0.8), Decay::Linear, 0.0),
                &[0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125],
            ),
            (
                config(14, 4, None, Decay::Cosine, 0.1),
                &[
                    0.25,
                    0.5,
                    0.75,
                    1.0,
                    1.0,
                    0.9779754323328191,
                    0.9140576474687263,
                    0.8145033635316129,
                    0.6890576474687263,
                    0.55,
                    0.41094235253127376,
                    0.2854966364683872,
                    0.18594235253127372,
                    0.12202456766718092,
                ],
            ),
            // Warmup-stable-decay: the peak holds until the last 5 steps.
            (
                config(20, 2, Some(0.25), Decay::Linear, 0.0),
                &[
                    0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
                    0.8, 0.6, 0.4, 0.2,
                ],
            ),
            // round(2.5) is 2, as Python rounds.
            (
                config(10, 2, Some(0.25), Decay::Sqrt, 0.0),
                &[
                    0.5,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    0.2928932188134524,
                ],
            ),
            // More warmup steps than steps: cut to the steps.
            (
                config(5, 10, None, Decay::Linear, 0.0),
                &[0.2, 0.4, 0.6, 0.8, 1.0],
            ),
            // Warmup plus decay over the total: the decay is cut to the steps left.
            (
                config(10, 8, Some(0.5), Decay::Cosine, 0.0),
                &[0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0, 0.5],
            ),
        ];
        for (config, expected) in cases {
            let got = rates(config.clone())?;
            assert_eq!(got.len(), expected.len(), "{config:?}");
            for (step, (g, e)) in got.iter().zip(expected).enumerate() {
                assert!((g - e).abs() < 1e-12, "{config:?} step {step}: {g} != {e}");
            }
        }
        Ok(())
    }

    #[test]
    fn constant_holds_the_peak_and_bad_ratios_are_refused() -> Result<()> {
        let lrs = rates(config(6, 2, None, Decay::Constant, 0.0))?;
        assert_eq!(lrs, [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let opt = Fake(0.0);
        let bad = Warmup::new(&opt, config(20, 2, Some(1.5), Decay::Linear, 0.0));
        let err = bad.expect_err("ratio above 1").to_string();
        assert!(err.contains("decay_ratio") && err.contains("1.5"), "{err}");
        let bad = Warmup::new(&opt, config(20, 2, None, Decay::Linear, -0.1));
        let err = bad.expect_err("negative floor").to_string();
        assert!(
            err.contains("min_lr_ratio") && err.contains("-0.1"),
            "{err}"
        );
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
