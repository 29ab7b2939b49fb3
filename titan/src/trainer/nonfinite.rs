//! Steps whose loss or gradient norm was NaN or infinite, tracked on the device so steps never
//! sync, and read wherever the loop syncs anyway (log points, evaluations, checkpoints): the
//! first such step, how many there were, and the longest run of them in a row.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// "No step" for the tracker.
const NO_STEP: i64 = i64::MAX;

/// The non-finite steps so far, as device scalars.
pub(crate) struct NonFinite {
    first_bad: Tensor,
    /// Non-finite steps in a row, up to the latest step, and the step that run began at.
    in_a_row: Tensor,
    run_start: Tensor,
    /// The longest such run so far, and the step it began at.
    longest: Tensor,
    longest_start: Tensor,
    /// Non-finite steps in all.
    total: Tensor,
}

/// [`NonFinite`] on the host, as a checkpoint keeps it: a resumed run goes on counting (a run of
/// skipped steps across the checkpoint is one run, and `skipped_steps` does not restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NonFiniteState {
    first_bad: i64,
    in_a_row: i64,
    run_start: i64,
    longest: i64,
    longest_start: i64,
    total: i64,
}

impl NonFiniteState {
    /// [`NonFinite::ended_finite`] of this state at step `last` (also a checkpoint's: a rerun
    /// of a complete run that diverged is still refused its export).
    pub fn ended_finite(&self, last: u64) -> Result<()> {
        let (in_a_row, start) = (self.in_a_row, self.run_start);
        if in_a_row == 0 {
            return Ok(());
        }
        Err(Error::Training(format!(
            "the run ended on {in_a_row} step(s) in a row (steps {start} to {last}) whose loss \
             or gradient norm was NaN or infinite, each skipped: it diverged, so it is not \
             reported as trained (nor exported); its checkpoints stay: resume from an earlier \
             one (--resume-from DIR/checkpoints/step-N) with a lower learning rate"
        )))
    }
}

/// What [`NonFinite::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Non-finite steps so far (each skipped by the optimizer).
    pub total: u64,
}

impl NonFinite {
    /// No bad step yet.
    pub fn new(device: Device) -> Result<Self> {
        let zero = || Tensor::f_zeros([], (Kind::Int64, device));
        Ok(Self {
            first_bad: Tensor::f_full([], NO_STEP, (Kind::Int64, device))?,
            in_a_row: zero()?,
            run_start: zero()?,
            longest: zero()?,
            longest_start: zero()?,
            total: zero()?,
        })
    }

    /// The counts so far, read to the host (a sync: at a checkpoint, where the loop syncs).
    pub fn state(&self) -> Result<NonFiniteState> {
        Ok(NonFiniteState {
            first_bad: self.first_bad.f_int64_value(&[])?,
            in_a_row: self.in_a_row.f_int64_value(&[])?,
            run_start: self.run_start.f_int64_value(&[])?,
            longest: self.longest.f_int64_value(&[])?,
            longest_start: self.longest_start.f_int64_value(&[])?,
            total: self.total.f_int64_value(&[])?,
        })
    }

    /// The tracker of a run resumed with `state`, on `device`.
    pub fn restored(device: Device, state: NonFiniteState) -> Result<Self> {
        let at = |v: i64| Tensor::f_full([], v, (Kind::Int64, device));
        Ok(Self {
            first_bad: at(state.first_bad)?,
            in_a_row: at(state.in_a_row)?,
            run_start: at(state.run_start)?,
            longest: at(state.longest)?,
            longest_start: at(state.longest_start)?,
            total: at(state.total)?,
        })
    }

    /// Notes `step` when its `loss` or `grad_norm` is not finite (no host sync).
    pub fn record(&mut self, step: u64, loss: &Tensor, grad_norm: &Tensor) -> Result<()> {
        let device = self.first_bad.device();
        let finite = loss
            .f_isfinite()?
            .f_logical_and(&grad_norm.f_to_device(device)?.f_isfinite()?)?;
        let here = Tensor::f_where_scalar(&finite, NO_STEP, step as i64)?;
        self.first_bad = self.first_bad.f_minimum(&here)?;
        let bad = finite.f_logical_not()?.f_to_kind(Kind::Int64)?;
        self.in_a_row = self.in_a_row.f_add(&bad)?.f_mul(&bad)?;
        let begins = self.in_a_row.f_eq(1)?;
        self.run_start = Tensor::f_where_scalarself(&begins, step as i64, &self.run_start)?;
        let longer = self.in_a_row.f_gt_tensor(&self.longest)?;
        self.longest_start = self.run_start.f_where_self(&longer, &self.longest_start)?;
        self.longest = self.longest.f_maximum(&self.in_a_row)?;
        self.total = self.total.f_add(&bad)?;
        Ok(())
    }

    /// An error when the run's latest steps were non-finite (each skipped): a run that ends so
    /// has diverged, whatever the limit on skipped steps, and is not reported as trained.
    pub fn ended_finite(&self, last: u64) -> Result<()> {
        self.state()?.ended_finite(last)
    }

    /// Stops the run, naming the first non-finite step and its batches (`accum` micro-batches
    /// a step), when a step was not finite and the optimizer could not skip it (`max_in_a_row`
    /// is `None`), or when more than `max_in_a_row` steps in a row were; otherwise says how
    /// many were skipped. Called before anything about those steps is written.
    pub fn check(&self, accum: u64, epoch: u64, max_in_a_row: Option<u64>) -> Result<Skipped> {
        let step = self.first_bad.f_int64_value(&[])?;
        let total = self.total.f_int64_value(&[])? as u64;
        if step == NO_STEP {
            return Ok(Skipped { total });
        }
        let longest = self.longest.f_int64_value(&[])? as u64;
        if let Some(max) = max_in_a_row
            && longest <= max
        {
            return Ok(Skipped { total });
        }
        // The longest run when it stops the run; the first bad step when the optimizer could
        // not skip it.
        let step = match max_in_a_row {
            Some(_) => self.longest_start.f_int64_value(&[])? as u64,
            None => step as u64,
        };
        let (first, last) = ((step - 1) * accum + 1, step * accum);
        let batches = if first == last {
            format!("training batch {first}")
        } else {
            format!("training batches {first}..={last}")
        };
        let at = format!(
            "the loss or gradient norm became NaN or infinite at step {step} ({batches} of \
             this run, dataloader epoch {epoch})"
        );
        Err(Error::Training(match max_in_a_row {
            None => format!("{at}; stopping before logging or evaluating it"),
            Some(max) => format!(
                "{at} and stayed so for {longest} steps in a row, each skipped without touching \
                 the weights: more than training.max_skipped_steps = {max}, stopping"
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_of_non_finite_steps_is_the_one_named() -> Result<()> {
        let mut tracker = NonFinite::new(Device::Cpu)?;
        let ok = Tensor::f_from_slice(&[1.0f32])?.f_squeeze()?;
        let nan = Tensor::f_from_slice(&[f32::NAN])?.f_squeeze()?;
        // Step 3 alone, then steps 6 to 9.
        for step in 1..=10u64 {
            let loss = if step == 3 || (6..=9).contains(&step) {
                &nan
            } else {
                &ok
            };
            tracker.record(step, loss, &ok)?;
        }
        assert_eq!(tracker.check(1, 0, Some(4))?, Skipped { total: 5 });
        let err = tracker
            .check(1, 0, Some(3))
            .expect_err("4 in a row")
            .to_string();
        assert!(
            err.contains("at step 6 (training batch 6 ") && err.contains("4 steps in a row"),
            "{err}"
        );
        let err = tracker
            .check(2, 0, None)
            .expect_err("not skipped")
            .to_string();
        assert!(err.contains("at step 3 (training batches 5..=6 "), "{err}");
        Ok(())
    }

    /// A run of skipped steps that a checkpoint cuts is one run after the resume.
    #[test]
    fn a_restored_tracker_goes_on_counting() -> Result<()> {
        let ok = Tensor::f_from_slice(&[1.0f32])?.f_squeeze()?;
        let nan = Tensor::f_from_slice(&[f32::NAN])?.f_squeeze()?;
        let mut before = NonFinite::new(Device::Cpu)?;
        for step in 1..=4u64 {
            before.record(step, if step >= 3 { &nan } else { &ok }, &ok)?;
        }
        let saved: NonFiniteState =
            serde_json::from_str(&serde_json::to_string(&before.state()?)?)?;
        let mut after = NonFinite::restored(Device::Cpu, saved)?;
        after.record(5, &nan, &ok)?;
        assert_eq!(after.check(1, 0, Some(3))?, Skipped { total: 3 });
        after.record(6, &nan, &ok)?;
        let err = after
            .check(1, 0, Some(3))
            .expect_err("4 in a row")
            .to_string();
        assert!(
            err.contains("at step 3 ") && err.contains("4 steps in a row"),
            "{err}"
        );
        Ok(())
    }

    /// Skipped steps within the run are survived; a run whose last steps were skipped has
    /// diverged and ends with an error naming them.
    #[test]
    fn a_run_that_ends_on_skipped_steps_has_diverged() -> Result<()> {
        let ok = Tensor::f_from_slice(&[1.0f32])?.f_squeeze()?;
        let nan = Tensor::f_from_slice(&[f32::NAN])?.f_squeeze()?;
        let mut tracker = NonFinite::new(Device::Cpu)?;
        for step in 1..=3u64 {
            tracker.record(step, if step == 2 { &nan } else { &ok }, &ok)?;
        }
        tracker.ended_finite(3)?;
        tracker.record(4, &ok, &nan)?;
        tracker.record(5, &nan, &ok)?;
        let err = tracker
            .ended_finite(5)
            .expect_err("ends on NaN")
            .to_string();
        assert!(err.contains("2 step(s) in a row (steps 4 to 5)"), "{err}");
        Ok(())
    }
}
