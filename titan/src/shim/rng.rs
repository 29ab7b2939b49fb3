//! The default random generators' state (CPU, and each CUDA device), for checkpoints: what
//! `torch.get_rng_state` / `torch.cuda.get_rng_state` return, as byte tensors.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::{c_char, c_void};

use tch::{Device, Tensor};

use super::{call, cuda_index};
use crate::{Error, Result};

unsafe extern "C" {
    fn titan_rng_state(
        device_type: i8,
        index: i8,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_set_rng_state(
        device_type: i8,
        index: i8,
        state: *const c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// c10's device type and index of `device`.
fn c10_device(device: Device) -> Result<(i8, i8)> {
    match device {
        Device::Cpu => Ok((0, -1)),
        Device::Cuda(_) => Ok((1, cuda_index(device)?.unwrap_or(0))),
        other => Err(Error::Unsupported(format!(
            "titan saves the random generators of CPU and CUDA, not {other:?}"
        ))),
    }
}

/// The state of `device`'s default random generator.
pub fn rng_state(device: Device) -> Result<Tensor> {
    let (kind, index) = c10_device(device)?;
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: `out` is a valid place for the shim to store a `new at::Tensor`; `err` is the
    // buffer `call` provides.
    call("reading the random generator's state", |err, len| unsafe {
        titan_rng_state(kind, index, &mut out, err, len)
    })?;
    if out.is_null() {
        return Err(Error::Torch(tch::TchError::Torch(
            "reading the random generator's state: no tensor returned".into(),
        )));
    }
    // SAFETY: on success the shim stored a `new at::Tensor`, which the `Tensor` now owns.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

/// Sets `device`'s default random generator to `state` (from [`rng_state`]).
pub fn set_rng_state(device: Device, state: &Tensor) -> Result<()> {
    let (kind, index) = c10_device(device)?;
    // SAFETY: `state` is a live tensor for the duration of the call (tch's `C_tensor` is an
    // `at::Tensor*`); the shim only reads it.
    call(
        "restoring the random generator's state",
        |err, len| unsafe { titan_set_rng_state(kind, index, state.as_ptr().cast(), err, len) },
    )
}
