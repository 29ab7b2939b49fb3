//! titan's C++ shim (`csrc/shim.cpp`, compiled by `build.rs` against libtorch's own headers):
//! the libtorch functions tch does not expose — fused AdamW and SGD, the device allocator's
//! memory statistics and CUDA graphs — and titan's fused CPU kernels (`csrc/fused_cpu.cpp`),
//! wrapped so each returns `titan::Result`.
//!
//! One file per thing bound: `c10d.rs` (torch's process groups and their store), `optim.rs` (fused optimizer steps), `kernels.rs` (fused CPU
//! kernels), `memory.rs` (the CUDA caching allocator), `graph.rs` (CUDA graphs), `rng.rs` (the
//! random generators' state), `profiler.rs` (libtorch's Kineto profiler), `precision.rs` (TF32 on CUDA), `mkl.rs` (MKL's vendor check), and `process.rs`, the one unsafe call that is not into libtorch (a child process tied to its parent's life). This file holds the one error
//! convention they share: a shim call returns 0, or 1 with libtorch's message in a buffer
//! (`csrc/guarded.h`), turned into [`Error::Torch`] by `call`.
#![allow(unsafe_code)] // The one place titan calls C++ (or unsafe std); each call states why it is sound.

pub mod c10d;
mod graph;
mod kernels;
mod memory;
mod mkl;
mod optim;
mod precision;
mod process;
mod profiler;
mod rng;

pub use graph::{CudaGraph, finish_within, has_cuda_graphs, make_current};
pub use kernels::{chunked_cross_entropy, fused_rms_norm, fused_rotary, fused_swiglu};
pub use memory::{DeviceMemory, device_memory, empty_cache, reset_peak_memory};
pub use mkl::mkl_vendor_check_off;
pub use optim::{AdamWLists, SgdStep, fused_adamw, fused_sgd};
pub use precision::{cuda_matmul_tf32, set_cuda_matmul_tf32};
pub(crate) use process::signal_when_parent_dies;
pub(crate) use profiler::quiet_kineto_without_gpu;
pub use profiler::{Profiler, Scope};
pub use rng::{rng_state, set_rng_state};

use std::ffi::{CStr, c_char};

use tch::{Device, Tensor};

use crate::{Error, Result};

// The helpers below stay private to `shim`, which makes them visible to its files and to
// nothing else in titan.

const ERR_LEN: usize = 1024;

/// Runs one shim call with an error buffer and turns a failure into [`Error::Torch`] with
/// libtorch's message, prefixed by `what`.
fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<()> {
    let mut err = [0 as c_char; ERR_LEN];
    if f(err.as_mut_ptr(), ERR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shim always NUL-terminates `err` within ERR_LEN when it reports a failure.
    let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
    Err(Error::Torch(tch::TchError::Torch(format!(
        "{what}: {message}"
    ))))
}

/// The raw `at::Tensor*` handles (tch's `C_tensor`) of `tensors`, borrowed for one call.
fn handles<'t>(tensors: impl IntoIterator<Item = &'t Tensor>) -> Vec<*const std::ffi::c_void> {
    tensors.into_iter().map(|t| t.as_ptr().cast()).collect()
}

/// The CUDA device index of `device`, as c10 takes it.
fn cuda_index(device: Device) -> Result<Option<i8>> {
    match device {
        Device::Cuda(i) => i8::try_from(i).map(Some).map_err(|_| {
            Error::config(
                "device",
                format!("cuda:{i}"),
                "CUDA device indices end at 127",
            )
        }),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_char;

    use tch::Device;

    use super::{call, cuda_index};
    use crate::Result;

    #[test]
    fn a_failed_call_carries_the_shims_message_after_what_was_called() {
        assert!(call("probe", |_, _| 0).is_ok());
        let err = call("probe", |err, len| {
            let message = b"boom\0";
            assert!(message.len() <= len);
            // SAFETY: `err` points at `len` writable bytes, as the buffer handed to the shim
            // does, and `message` fits (checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr().cast::<c_char>(), err, message.len())
            };
            1
        })
        .expect_err("the call reported a failure")
        .to_string();
        assert!(err.contains("probe: boom"), "{err}");
    }

    #[test]
    fn cuda_indices_end_at_127() -> Result<()> {
        assert_eq!(cuda_index(Device::Cpu)?, None);
        assert_eq!(cuda_index(Device::Cuda(127))?, Some(127));
        let err = cuda_index(Device::Cuda(128)).expect_err("128").to_string();
        assert!(err.contains("cuda:128"), "{err}");
        Ok(())
    }
}
