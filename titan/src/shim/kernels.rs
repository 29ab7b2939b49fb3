//! titan's fused CPU kernels for the Llama block (`csrc/fused_cpu.cpp`): RMSNorm, rotary
//! embedding and SwiGLU on f32 CPU tensors, each one differentiable libtorch op.
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

// The kernels' numerics, gradients included, are checked against libtorch's composite ops
// where the model uses them (`model/llama.rs`); this test checks the binding.
#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{fused_rms_norm, fused_rotary, fused_swiglu};
    use crate::Result;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

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
