//! The first step whose loss or gradient norm was NaN or infinite, tracked on the device so
//! steps never sync, and read wherever the loop syncs anyway (log points, evaluations).

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// "No step" for the tracker.
const NO_STEP: i64 = i64::MAX;

/// The first non-finite step, as a device scalar.
pub(crate) struct NonFinite {
    first_bad: Tensor,
}

impl NonFinite {
    /// No bad step yet.
    pub fn new(device: Device) -> Result<Self> {
        Ok(Self {
            first_bad: Tensor::f_full([], NO_STEP, (Kind::Int64, device))?,
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
        Ok(())
    }

    /// Stops the run, naming the step and its batches (`accum` micro-batches a step), when a
    /// step was not finite. Called before anything about that step is written.
    pub fn check(&self, accum: u64, epoch: u64) -> Result<()> {
        let step = self.first_bad.f_int64_value(&[])?;
        if step == NO_STEP {
            return Ok(());
        }
        let step = step as u64;
        let (first, last) = ((step - 1) * accum + 1, step * accum);
        let batches = if first == last {
            format!("training batch {first}")
        } else {
            format!("training batches {first}..={last}")
        };
        Err(Error::Training(format!(
            "the loss or gradient norm became NaN or infinite at step {step} ({batches} of this \
             run, dataloader epoch {epoch}); stopping before logging or evaluating it"
        )))
    }
}
