//! titan's fused CPU kernels for the Llama block (`csrc/fused_cpu.cpp`): RMSNorm, rotary
//! embedding and SwiGLU on f32 CPU tensors, each one differentiable libtorch op; and the
//! chunked cross-entropy (`csrc/cross_entropy.cpp`), on any device.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::{c_char, c_void};

use tch::Tensor;

use super::call;
use crate::{Error, Result};

unsafe extern "C" {
    fn titan_fused_rms_norm(
        x: *const c_void,
        weight: *const c_void,
        eps: f64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_fused_rotary(
        x: *const c_void,
        cos: *const c_void,
        sin: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_chunked_cross_entropy(
        logits: *const c_void,
        targets: *const c_void,
        ignore: i64,
        chunk: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_fused_swiglu(
        gate: *const c_void,
        up: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// Runs a shim call that creates one tensor and takes ownership of it.
fn new_tensor(
    what: &str,
    f: impl FnOnce(*mut *mut c_void, *mut c_char, usize) -> i32,
) -> Result<Tensor> {
    let mut out: *mut c_void = std::ptr::null_mut();
    call(what, |err, len| f(&mut out, err, len))?;
    if out.is_null() {
        return Err(Error::Torch(tch::TchError::Torch(format!(
            "{what}: no tensor returned"
        ))));
    }
    // SAFETY: on success the shim stores a `new at::Tensor`, which the returned `Tensor` now
    // owns and frees, as tch does with the tensors its own calls return.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

/// Fused RMSNorm (`csrc/fused_cpu.cpp`) of an f32 CPU tensor over its last dimension:
/// `x * rsqrt(mean(x²) + eps) * weight`, differentiable in `x` and `weight`.
pub fn fused_rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    new_tensor("fused RMSNorm", |out, err, len| {
        // SAFETY: live `at::Tensor*` handles borrowed for the call; `out` is written on success.
        unsafe {
            titan_fused_rms_norm(
                x.as_ptr().cast(),
                weight.as_ptr().cast(),
                eps,
                out,
                err,
                len,
            )
        }
    })
}

/// Fused rotary embedding (Hugging Face's half rotation) of an f32 CPU `x` (batch, heads, seq,
/// head_dim) with `cos` and `sin` tables (seq, head_dim); differentiable in `x`.
pub fn fused_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    new_tensor("fused rotary embedding", |out, err, len| {
        // SAFETY: live `at::Tensor*` handles borrowed for the call; `out` is written on success.
        unsafe {
            titan_fused_rotary(
                x.as_ptr().cast(),
                cos.as_ptr().cast(),
                sin.as_ptr().cast(),
                out,
                err,
                len,
            )
        }
    })
}

/// Fused SwiGLU gate `silu(gate) * up` of same-shaped f32 CPU tensors, differentiable in both.
pub fn fused_swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    new_tensor("fused SwiGLU", |out, err, len| {
        // SAFETY: live `at::Tensor*` handles borrowed for the call; `out` is written on success.
        unsafe { titan_fused_swiglu(gate.as_ptr().cast(), up.as_ptr().cast(), out, err, len) }
    })
}

/// Cross-entropy of `logits` (rows, vocab; any float dtype, any device) against int64
/// `targets` (rows), summed over the rows whose target is not `ignore`, as a 0-dim f32 tensor;
/// computed in f32 `chunk` rows at a time, so no f32 copy of the whole logits (nor their
/// log-softmax) is made. Differentiable in `logits` (once); the gradient keeps their dtype.
pub fn chunked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    ignore: i64,
    chunk: i64,
) -> Result<Tensor> {
    new_tensor("chunked cross-entropy", |out, err, len| {
        // SAFETY: live `at::Tensor*` handles borrowed for the call; `out` is written on success.
        unsafe {
            titan_chunked_cross_entropy(
                logits.as_ptr().cast(),
                targets.as_ptr().cast(),
                ignore,
                chunk,
                out,
                err,
                len,
            )
        }
    })
}

// The kernels' numerics, gradients included, are checked against libtorch's composite ops
// where the model uses them (`model/llama.rs`); this test checks the binding.
#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{chunked_cross_entropy, fused_rms_norm, fused_rotary, fused_swiglu};
    use crate::Result;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// Loss and gradient of `logits` through `f`.
    fn loss_and_grad(
        logits: &Tensor,
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<(f64, Tensor)> {
        let leaf = logits.f_detach()?.f_requires_grad_(true)?;
        let loss = f(&leaf)?;
        loss.f_backward()?;
        Ok((loss.f_double_value(&[])?, leaf.f_grad()?))
    }

    /// In chunks of 1, 3 and all rows, f32 and bf16 logits, with ignored rows: the loss and the
    /// gradient of libtorch's cross-entropy over the f32 logits.
    #[test]
    fn chunked_cross_entropy_matches_libtorchs() -> Result<()> {
        tch::manual_seed(3);
        let logits = Tensor::f_randn([10, 37], CPU)?.f_mul_scalar(4.0)?;
        let targets = Tensor::from_slice(&[3i64, -100, 0, 36, 5, 5, -100, 1, 2, 9]);
        let (expected, grad) = loss_and_grad(&logits, |x| {
            Ok(x.f_cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Sum, -100, 0.0)?)
        })?;
        for kind in [Kind::Float, Kind::BFloat16] {
            let logits = logits.f_to_kind(kind)?;
            for chunk in [1, 3, 10, 64] {
                let (loss, g) =
                    loss_and_grad(&logits, |x| chunked_cross_entropy(x, &targets, -100, chunk))?;
                let tol = if kind == Kind::Float { 1e-5 } else { 2e-2 };
                assert!(
                    (loss - expected).abs() <= tol * expected.abs(),
                    "{kind:?} chunk {chunk}: {loss} against {expected}"
                );
                assert_eq!(g.kind(), kind);
                let diff = g
                    .f_to_kind(Kind::Float)?
                    .f_sub(&grad)?
                    .f_abs()?
                    .f_max()?
                    .f_double_value(&[])?;
                assert!(
                    diff <= tol,
                    "{kind:?} chunk {chunk}: gradient off by {diff}"
                );
            }
        }
        // The logits are left as they were (backward works on a copy of each chunk).
        let before = logits.f_mul_scalar(1.0)?;
        let _ = loss_and_grad(&logits, |x| chunked_cross_entropy(x, &targets, -100, 4))?;
        assert!(logits.f_equal(&before)?, "the logits changed");
        // Ignored rows get no gradient.
        let (_, g) = loss_and_grad(&logits, |x| chunked_cross_entropy(x, &targets, -100, 4))?;
        assert_eq!(
            g.f_get(1)?
                .f_abs()?
                .f_sum(Kind::Float)?
                .f_double_value(&[])?,
            0.0
        );
        let err = chunked_cross_entropy(&logits, &targets.f_narrow(0, 0, 9)?, -100, 4)
            .expect_err("rows")
            .to_string();
        assert!(
            err.contains("chunked cross-entropy: ") && err.contains("10 rows"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_refusal_names_the_kernel_that_refused() -> Result<()> {
        let x = Tensor::f_ones([2, 4], CPU)?;
        let err = fused_rotary(&x, &x, &x).expect_err("2-d").to_string();
        assert!(err.contains("fused rotary embedding: "), "{err}");
        let w = Tensor::f_ones([3], CPU)?;
        let err = fused_rms_norm(&x, &w, 1e-6).expect_err("width").to_string();
        assert!(err.contains("fused RMSNorm: "), "{err}");
        let half = Tensor::f_ones([2, 4], (Kind::Half, Device::Cpu))?;
        let err = fused_swiglu(&half, &half).expect_err("f16").to_string();
        assert!(err.contains("fused SwiGLU: "), "{err}");
        Ok(())
    }
}
