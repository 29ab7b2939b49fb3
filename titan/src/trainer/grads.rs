//! Gradients of one step: token-weighted accumulation over micro-batches and clipping of the
//! global norm, both without a host sync.

use tch::{Kind, Tensor};

use crate::dist::GradReducer;
use crate::{Error, Result};

/// Runs `micro_batches` micro-batches (`micro(i)` runs one's forward and backward passes of its
/// loss *sum*, e.g. with [`Model::forward_backward`], and returns that sum and its count of
/// tokens) and divides the accumulated gradients by the total count: the gradient of the mean loss over every counted token of the step, what one large
/// batch gives however padding falls (torchtitan's global valid tokens). Returns the step's
/// mean loss (detached) and the total count (0 when every label was ignored), as tensors
/// (reading them would sync the device).
pub fn accumulate_gradients<F>(
    params: &[(String, Tensor)],
    micro_batches: usize,
    micro: F,
) -> Result<(Tensor, Tensor)>
where
    F: FnMut(usize) -> Result<(Tensor, Tensor)>,
{
    accumulate_across(params, micro_batches, None, micro)
}

/// As [`accumulate_gradients`], across the ranks of `reducer` when given: every rank's
/// gradient sums, loss sums and counts are summed over the ranks before the division (the
/// gradients while the last micro-batch's backward runs), so N ranks give the gradient, loss and
/// count of one batch holding all their tokens.
pub(crate) fn accumulate_across<F>(
    params: &[(String, Tensor)],
    micro_batches: usize,
    reducer: Option<&GradReducer>,
    mut micro: F,
) -> Result<(Tensor, Tensor)>
where
    F: FnMut(usize) -> Result<(Tensor, Tensor)>,
{
    if micro_batches == 0 {
        return Err(Error::config(
            "training.grad_accum_steps",
            micro_batches,
            "must be at least 1",
        ));
    }
    let mut total: Option<(Tensor, Tensor)> = None;
    for i in 0..micro_batches {
        if let Some(reducer) = reducer.filter(|_| i + 1 == micro_batches) {
            reducer.arm()?;
        }
        let (sum, count) = micro(i)?;
        let (sum, count) = (sum.f_detach()?, count.f_to_kind(Kind::Float)?);
        total = Some(match total {
            None => (sum, count),
            Some((s, c)) => (s.f_add(&sum)?, c.f_add(&count)?),
        });
    }
    let Some((sum, count)) = total else {
        return Err(Error::Training("no micro-batch ran".into()));
    };
    let _guard = tch::no_grad_guard();
    let (sum, count) = match reducer {
        None => (sum, count),
        Some(reducer) => {
            let stats = Tensor::f_stack(&[sum.f_to_kind(Kind::Float)?, count], 0)?;
            reducer.finish(&stats)?;
            (stats.f_get(0)?.f_to_kind(sum.kind())?, stats.f_get(1)?)
        }
    };
    // A step that counted nothing keeps its (zero) sums: no division by zero.
    let divisor = count.f_clamp_min(1)?;
    let scale = divisor.f_reciprocal()?;
    for (_, p) in params {
        let mut grad = p.grad();
        if grad.defined() {
            let _ = grad.f_mul_(&scale)?;
        }
    }
    Ok((sum.f_div(&divisor)?, count))
}

/// Scales gradients so their global L2 norm is at most `max_norm` (0: no clipping) and returns
/// the norm before clipping, as a tensor (reading it would sync the device).
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.grad())
        .filter(Tensor::defined)
        .collect();
    let norms = grads
        .iter()
        .map(|g| g.f_norm())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if norms.is_empty() {
        return Ok(Tensor::f_zeros([], (Kind::Float, tch::Device::Cpu))?);
    }
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    if max_norm > 0.0 {
        let coef = total
            .f_add_scalar(1e-6)?
            .f_reciprocal()?
            .f_mul_scalar(max_norm)?
            .f_clamp_max(1.0)?;
        for mut g in grads {
            let _ = g.f_mul_(&coef)?;
        }
    }
    Ok(total)
}
