//! titan's C++ shim (`csrc/shim.cpp`, compiled by `build.rs` against libtorch's own headers):
//! the libtorch functions tch does not expose — fused AdamW and SGD, the device allocator's
//! memory statistics and CUDA graphs — and titan's fused CPU kernels (`csrc/fused_cpu.cpp`),
//! wrapped so each returns `titan::Result`.
#![allow(unsafe_code)] // The one place titan calls C++; each call states why it is sound.

use std::ffi::{CStr, c_char, c_void};

use tch::{Device, Tensor};

use crate::{Error, Result};

const ERR_LEN: usize = 1024;

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
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_device_memory(
        device_type: i8,
        index: i8,
        out: *mut i64,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_reset_peak_memory(device_type: i8, index: i8, err: *mut c_char, err_len: usize)
    -> i32;
    fn titan_empty_cache(device_type: i8, err: *mut c_char, err_len: usize) -> i32;
    fn titan_has_cuda_graphs() -> bool;
    fn titan_mkl_vendor_check_off() -> i32;
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

/// Whether MKL picks its CPU kernels by instruction set alone in this process: titan's shim
/// replaces MKL's Intel-only vendor check, so AMD CPUs get the AVX2 kernels Intel CPUs get
/// (`TITAN_MKL_VENDOR_CHECK=1` keeps MKL's check). False without MKL, where the executable does
/// not export the replacement, or with `TITAN_MKL_VENDOR_CHECK=1`.
pub fn mkl_vendor_check_off() -> bool {
    // SAFETY: takes no arguments; only looks up a symbol and reads an environment variable.
    unsafe { titan_mkl_vendor_check_off() == 1 }
}

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

/// The raw `at::Tensor*` handles of `tensors`, borrowed for one call.
fn handles(tensors: &[&Tensor]) -> Vec<*const c_void> {
    tensors
        .iter()
        .map(|t| t.as_ptr().cast::<c_void>())
        .collect()
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
/// `lr` is a one-element float tensor on the parameters' device.
pub fn fused_adamw(
    lists: &AdamWLists<'_>,
    lr: &Tensor,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
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
        handles(lists.params),
        handles(lists.grads),
        handles(lists.exp_avgs),
        handles(lists.exp_avg_sqs),
        handles(lists.steps),
    );
    call("fused AdamW", |err, len| {
        // SAFETY: every pointer is a live `at::Tensor*` borrowed from `lists` and `lr` for the
        // duration of the call, and each list holds `n` of them (checked above).
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
                err,
                len,
            )
        }
    })
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
/// the momentum buffers (empty when momentum is 0).
pub fn fused_sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    buffers: &[&Tensor],
    step: SgdStep,
) -> Result<()> {
    let n = params.len();
    if grads.len() != n || (!buffers.is_empty() && buffers.len() != n) {
        return Err(Error::Mismatch(format!(
            "fused SGD: {} gradients and {} buffers for {n} parameters",
            grads.len(),
            buffers.len()
        )));
    }
    let (p, g, b) = (handles(params), handles(grads), handles(buffers));
    call("fused SGD", |err, len| {
        // SAFETY: live `at::Tensor*` handles, `n` per list (checked above); a null buffer list
        // is how the shim is told there is no momentum.
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
                err,
                len,
            )
        }
    })
}

/// Bytes held by libtorch's caching allocator on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes in live tensors now.
    pub allocated: i64,
    /// Most bytes in live tensors since the last reset.
    pub max_allocated: i64,
    /// Bytes reserved from the device now (live and cached).
    pub reserved: i64,
    /// Most bytes reserved since the last reset.
    pub max_reserved: i64,
}

/// c10's `DeviceType::CUDA`.
const CUDA: i8 = 1;

/// The CUDA caching allocator's statistics for `device`; `None` on CPU.
pub fn device_memory(device: Device) -> Result<Option<DeviceMemory>> {
    let Some(index) = cuda_index(device)? else {
        return Ok(None);
    };
    let mut out = [0i64; 4];
    call("CUDA memory statistics", |err, len| {
        // SAFETY: `out` has the four slots the shim writes.
        unsafe { titan_device_memory(CUDA, index, out.as_mut_ptr(), err, len) }
    })?;
    Ok(Some(DeviceMemory {
        allocated: out[0],
        max_allocated: out[1],
        reserved: out[2],
        max_reserved: out[3],
    }))
}

/// Resets the peaks [`device_memory`] reports for `device` (nothing on CPU).
pub fn reset_peak_memory(device: Device) -> Result<()> {
    let Some(index) = cuda_index(device)? else {
        return Ok(());
    };
    call("CUDA memory statistics", |err, len| {
        // SAFETY: plain values in, error buffer out.
        unsafe { titan_reset_peak_memory(CUDA, index, err, len) }
    })
}

/// Returns the CUDA caching allocator's cached, unused blocks to the device (nothing on CPU).
pub fn empty_cache(device: Device) -> Result<()> {
    if !device.is_cuda() {
        return Ok(());
    }
    call("CUDA empty cache", |err, len| {
        // SAFETY: plain value in, error buffer out.
        unsafe { titan_empty_cache(CUDA, err, len) }
    })
}

/// Whether this build of titan can capture CUDA graphs (it found CUDA's headers).
pub fn has_cuda_graphs() -> bool {
    // SAFETY: no arguments; returns a constant.
    unsafe { titan_has_cuda_graphs() }
}

pub use graph::CudaGraph;

#[cfg(titan_cuda)]
mod graph {
    use std::ffi::{c_char, c_void};
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

    use tch::Device;

    use super::{call, cuda_index};
    use crate::{Error, Result};

    unsafe extern "C" {
        fn titan_graph_new(device: i8, err: *mut c_char, err_len: usize) -> *mut c_void;
        fn titan_graph_free(graph: *mut c_void);
        fn titan_graph_begin_side(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_end_side(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_capture_begin(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_capture_end(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_replay(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
    }

    /// Where a graph is in its life.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Phase {
        Empty,
        Captured,
        Failed,
    }

    /// A CUDA graph (libtorch's `at::cuda::CUDAGraph`) on one device: work queued inside
    /// [`CudaGraph::capture`] is recorded once, its memory from a private pool, and
    /// [`CudaGraph::replay`] relaunches all of it in one call. Replays read and write the very
    /// tensors the capture used (parameters, gradients, optimizer state, input buffers): keep
    /// them alive, and copy new inputs into them, for as long as the graph is replayed.
    #[derive(Debug)]
    pub struct CudaGraph {
        raw: *mut c_void,
        phase: Phase,
    }

    impl CudaGraph {
        /// An empty graph for `device` (a CUDA device).
        pub fn new(device: Device) -> Result<Self> {
            let Some(index) = cuda_index(device)? else {
                return Err(Error::config(
                    "device",
                    format!("{device:?}"),
                    "CUDA graphs need a CUDA device",
                ));
            };
            let mut raw = std::ptr::null_mut();
            call("CUDA graph", |err, len| {
                // SAFETY: returns an owned graph or null with the error written.
                raw = unsafe { titan_graph_new(index, err, len) };
                i32::from(raw.is_null())
            })?;
            Ok(Self {
                raw,
                phase: Phase::Empty,
            })
        }

        /// Runs `work` on the graph's side stream (warm-up before capture: graphs are never
        /// captured on the default stream), then waits for it.
        pub fn on_side_stream<T>(&mut self, work: impl FnOnce() -> Result<T>) -> Result<T> {
            self.side(false, work)
        }

        /// Records `work` (run once on the side stream while capturing) into the graph. On
        /// failure the capture is abandoned cleanly and the graph cannot be used again.
        pub fn capture<T>(&mut self, work: impl FnOnce() -> Result<T>) -> Result<T> {
            if self.phase != Phase::Empty {
                return Err(Error::Training(format!(
                    "this CUDA graph cannot capture again (it is {:?})",
                    self.phase
                )));
            }
            let out = self.side(true, work);
            self.phase = if out.is_ok() {
                Phase::Captured
            } else {
                Phase::Failed
            };
            out
        }

        /// Relaunches the captured work on the device's current stream.
        pub fn replay(&mut self) -> Result<()> {
            if self.phase != Phase::Captured {
                return Err(Error::Training(format!(
                    "replay of a CUDA graph that holds no capture (it is {:?})",
                    self.phase
                )));
            }
            call("CUDA graph replay", |err, len| {
                // SAFETY: `raw` is a live graph owned by `self`.
                unsafe { titan_graph_replay(self.raw, err, len) }
            })
        }

        fn side<T>(&mut self, capture: bool, work: impl FnOnce() -> Result<T>) -> Result<T> {
            let raw = self.raw;
            call("CUDA side stream", |err, len| {
                // SAFETY: `raw` is a live graph owned by `self`.
                unsafe { titan_graph_begin_side(raw, err, len) }
            })?;
            let begun = if capture {
                call("CUDA graph capture", |err, len| {
                    // SAFETY: as above; the side stream is current.
                    unsafe { titan_graph_capture_begin(raw, err, len) }
                })
            } else {
                Ok(())
            };
            // A panic inside `work` must still end the capture and restore the stream, or
            // libtorch would keep capturing into this graph after it is gone.
            let out = catch_unwind(AssertUnwindSafe(|| begun.and_then(|()| work())));
            let ended = match (&out, capture) {
                (Ok(Ok(_)), true) => call("CUDA graph capture", |err, len| {
                    // SAFETY: as above; ends the capture begun above.
                    unsafe { titan_graph_capture_end(raw, err, len) }
                }),
                _ => Ok(()),
            };
            // Ends a capture still open (the work failed), waits, restores stream and device.
            let restored = call("CUDA side stream", |err, len| {
                // SAFETY: as above; restores what begin_side replaced.
                unsafe { titan_graph_end_side(raw, err, len) }
            });
            let out = match out {
                Ok(out) => out?,
                Err(panic) => resume_unwind(panic),
            };
            ended?;
            restored?;
            Ok(out)
        }
    }

    impl Drop for CudaGraph {
        fn drop(&mut self) {
            // SAFETY: `raw` came from titan_graph_new and is freed once, here.
            unsafe { titan_graph_free(self.raw) }
        }
    }
}

#[cfg(not(titan_cuda))]
mod graph {
    use tch::Device;

    use crate::{Error, Result};

    /// A CUDA graph; this build found no CUDA headers, so every call says so.
    #[derive(Debug)]
    pub struct CudaGraph;

    impl CudaGraph {
        /// Always an error in this build.
        pub fn new(device: Device) -> Result<Self> {
            Err(Error::config(
                "device",
                format!("{device:?}"),
                "titan was built without CUDA's headers, so it cannot capture CUDA graphs \
                 (set TITAN_CUDA_INCLUDE and rebuild)",
            ))
        }

        /// Never reached: [`CudaGraph::new`] fails.
        pub fn on_side_stream<T>(&mut self, work: impl FnOnce() -> Result<T>) -> Result<T> {
            work()
        }

        /// Never reached: [`CudaGraph::new`] fails.
        pub fn capture<T>(&mut self, work: impl FnOnce() -> Result<T>) -> Result<T> {
            work()
        }

        /// Never reached: [`CudaGraph::new`] fails.
        pub fn replay(&mut self) -> Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    /// The executable exports the shim's answer to MKL's vendor check, so libtorch's MKL
    /// resolves to it (fails if the `--export-dynamic-symbol` link argument is lost).
    #[test]
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn mkl_vendor_check_resolves_to_the_shim() {
        let kept = std::env::var("TITAN_MKL_VENDOR_CHECK").as_deref() == Ok("1");
        assert_eq!(super::mkl_vendor_check_off(), !kept);
    }
}
