//! libtorch's fused optimizer kernels (`torch._fused_adamw_`, `torch._fused_sgd_`), one call
//! per parameter group of one device and dtype.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::{c_char, c_void};

use tch::Tensor;

use super::{call, handles};
use crate::{Error, Result};

unsafe extern "C" {
    fn titan_fused_adamw(
        params: *const *const c_void,
        grads: *const *const c_void,
        exp_avgs: *const *const c_void,
        exp_avg_sqs: *const *const c_void,
        steps: *const *const c_void,
        n: usize,
        lr: *const c_void,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        found_inf: *const c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_fused_sgd(
        params: *const *const c_void,
        grads: *const *const c_void,
        momentum_buffers: *const *const c_void,
        n: usize,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        dampening: f64,
        nesterov: bool,
        is_first_step: bool,
        found_inf: *const c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// The lists one fused AdamW call updates: parameters of one device and dtype with their
/// gradients, moments and step counts.
#[derive(Debug)]
pub struct AdamWLists<'a> {
    /// The parameters, updated in place.
    pub params: &'a [&'a Tensor],
    /// Their gradients.
    pub grads: &'a [&'a Tensor],
    /// First moments.
    pub exp_avgs: &'a [&'a Tensor],
    /// Second moments.
    pub exp_avg_sqs: &'a [&'a Tensor],
    /// Step counts (float scalars; already incremented for this step).
    pub steps: &'a [&'a Tensor],
}

/// One step of libtorch's fused AdamW kernel (`torch._fused_adamw_`, CPU or CUDA) over `lists`;
/// `lr` is a one-element float tensor on the parameters' device. With `found_inf` (a float
/// scalar there) at 1 the kernel changes no parameter or moment, decided on the device.
pub fn fused_adamw(
    lists: &AdamWLists<'_>,
    lr: &Tensor,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
    found_inf: Option<&Tensor>,
) -> Result<()> {
    let n = lists.params.len();
    for (name, list) in [
        ("grads", lists.grads),
        ("exp_avgs", lists.exp_avgs),
        ("exp_avg_sqs", lists.exp_avg_sqs),
        ("steps", lists.steps),
    ] {
        if list.len() != n {
            return Err(Error::Mismatch(format!(
                "fused AdamW: {} {name} for {n} parameters",
                list.len()
            )));
        }
    }
    let (p, g, m, v, s) = (
        handles(lists.params.iter().copied()),
        handles(lists.grads.iter().copied()),
        handles(lists.exp_avgs.iter().copied()),
        handles(lists.exp_avg_sqs.iter().copied()),
        handles(lists.steps.iter().copied()),
    );
    let found_inf = found_inf.map_or(std::ptr::null(), |t| t.as_ptr().cast::<c_void>());
    call("fused AdamW", |err, len| {
        // SAFETY: every pointer is a live `at::Tensor*` borrowed from `lists`, `lr` and
        // `found_inf` (or null) for the duration of the call, and each list holds `n` of them
        // (checked above).
        unsafe {
            titan_fused_adamw(
                p.as_ptr(),
                g.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                s.as_ptr(),
                n,
                lr.as_ptr().cast(),
                betas.0,
                betas.1,
                weight_decay,
                eps,
                found_inf,
                err,
                len,
            )
        }
    })
}

/// Settings of one fused SGD call.
#[derive(Debug, Clone, Copy)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: no buffers).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The first step initialises the momentum buffers from the gradients.
    pub first: bool,
}

/// One step of libtorch's fused SGD kernel (`torch._fused_sgd_`) over `params`; `buffers` are
/// the momentum buffers (empty when momentum is 0). With `found_inf` (a float scalar on the
/// parameters' device) at 1 the kernel changes nothing, decided on the device.
pub fn fused_sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    buffers: &[&Tensor],
    step: SgdStep,
    found_inf: Option<&Tensor>,
) -> Result<()> {
    let n = params.len();
    if grads.len() != n || (!buffers.is_empty() && buffers.len() != n) {
        return Err(Error::Mismatch(format!(
            "fused SGD: {} gradients and {} buffers for {n} parameters",
            grads.len(),
            buffers.len()
        )));
    }
    let (p, g, b) = (
        handles(params.iter().copied()),
        handles(grads.iter().copied()),
        handles(buffers.iter().copied()),
    );
    let found_inf = found_inf.map_or(std::ptr::null(), |t| t.as_ptr().cast::<c_void>());
    call("fused SGD", |err, len| {
        // SAFETY: live `at::Tensor*` handles, `n` per list (checked above), and `found_inf`
        // (or null); a null buffer list is how the shim is told there is no momentum.
        unsafe {
            titan_fused_sgd(
                p.as_ptr(),
                g.as_ptr(),
                if b.is_empty() {
                    std::ptr::null()
                } else {
                    b.as_ptr()
                },
                n,
                step.weight_decay,
                step.momentum,
                step.lr,
                step.dampening,
                step.nesterov,
                step.first,
                found_inf,
                err,
                len,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{AdamWLists, SgdStep, fused_adamw, fused_sgd};
    use crate::{Error, Result};

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    #[test]
    fn adamw_refuses_lists_of_different_lengths() -> Result<()> {
        let t = Tensor::f_zeros([2], CPU)?;
        let lr = Tensor::f_full([1], 1e-3, CPU)?;
        let (two, one) = ([&t, &t], [&t]);
        let lists = AdamWLists {
            params: &two,
            grads: &one,
            exp_avgs: &two,
            exp_avg_sqs: &two,
            steps: &two,
        };
        let err =
            fused_adamw(&lists, &lr, (0.9, 0.999), 0.0, 1e-8, None).expect_err("one gradient");
        assert!(matches!(err, Error::Mismatch(_)), "{err}");
        assert!(
            err.to_string().contains("1 grads for 2 parameters"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn sgd_refuses_lists_of_different_lengths() -> Result<()> {
        let t = Tensor::f_zeros([2], CPU)?;
        let step = SgdStep {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            first: true,
        };
        let err = fused_sgd(&[&t, &t], &[&t, &t], &[&t], step, None).expect_err("one buffer");
        assert!(matches!(err, Error::Mismatch(_)), "{err}");
        assert!(
            err.to_string()
                .contains("2 gradients and 1 buffers for 2 parameters"),
            "{err}"
        );
        Ok(())
    }

    /// Without momentum the shim passes no buffer list: plain `p -= lr * g`.
    #[test]
    fn sgd_without_momentum_steps_against_the_gradient() -> Result<()> {
        let p = Tensor::f_ones([3], CPU)?;
        let g = Tensor::f_full([3], 0.5, CPU)?;
        let step = SgdStep {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            first: true,
        };
        fused_sgd(&[&p], &[&g], &[], step, None)?;
        let expected = Tensor::f_full([3], 0.95, CPU)?;
        assert!(p.f_allclose(&expected, 1e-6, 1e-6, false)?, "{p}");
        Ok(())
    }

    /// `found_inf` at 1 leaves parameters, moments and buffers as they were; at 0 the step
    /// is taken: the skip is the kernel's, on the device.
    #[test]
    fn found_inf_skips_the_fused_steps() -> Result<()> {
        let inf = Tensor::f_ones([], CPU)?;
        let none = Tensor::f_zeros([], CPU)?;
        let step = SgdStep {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            first: true,
        };
        let (p, g, b) = (
            Tensor::f_ones([3], CPU)?,
            Tensor::f_full([3], 0.5, CPU)?,
            Tensor::f_zeros([3], CPU)?,
        );
        fused_sgd(&[&p], &[&g], &[&b], step, Some(&inf))?;
        assert!(p.f_equal(&Tensor::f_ones([3], CPU)?)?, "{p}");
        assert!(b.f_equal(&Tensor::f_zeros([3], CPU)?)?, "{b}");
        fused_sgd(&[&p], &[&g], &[&b], step, Some(&none))?;
        assert!(!p.f_equal(&Tensor::f_ones([3], CPU)?)?, "{p}");

        let (p, m, v, s) = (
            Tensor::f_ones([3], CPU)?,
            Tensor::f_zeros([3], CPU)?,
            Tensor::f_zeros([3], CPU)?,
            Tensor::f_ones([], CPU)?,
        );
        let lists = AdamWLists {
            params: &[&p],
            grads: &[&g],
            exp_avgs: &[&m],
            exp_avg_sqs: &[&v],
            steps: &[&s],
        };
        let lr = Tensor::f_full([], 0.1, CPU)?;
        fused_adamw(&lists, &lr, (0.9, 0.999), 0.01, 1e-8, Some(&inf))?;
        assert!(p.f_equal(&Tensor::f_ones([3], CPU)?)?, "{p}");
        assert!(m.f_equal(&Tensor::f_zeros([3], CPU)?)?, "{m}");
        fused_adamw(&lists, &lr, (0.9, 0.999), 0.01, 1e-8, Some(&none))?;
        assert!(!p.f_equal(&Tensor::f_ones([3], CPU)?)?, "{p}");
        Ok(())
    }
}
