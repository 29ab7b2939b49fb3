//! CUDA graphs (libtorch's `at::cuda::CUDAGraph`): a step's device work recorded once and
//! replayed in one launch. Bound only where `build.rs` found CUDA's headers (`cfg(titan_cuda)`);
//! without them [`CudaGraph`] keeps its methods, and each is an error saying so.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

#[cfg(titan_cuda)]
pub use cuda::{CudaGraph, finish_within, make_current};
#[cfg(not(titan_cuda))]
pub use without_cuda::{CudaGraph, finish_within, make_current};

unsafe extern "C" {
    fn titan_has_cuda_graphs() -> bool;
}

/// Whether this build of titan can capture CUDA graphs (it found CUDA's headers).
pub fn has_cuda_graphs() -> bool {
    // SAFETY: no arguments; returns a constant.
    unsafe { titan_has_cuda_graphs() }
}

#[cfg(titan_cuda)]
mod cuda {
    use std::ffi::{c_char, c_void};
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

    use tch::Device;

    use crate::shim::{call, cuda_index};
    use crate::{Error, Result};

    unsafe extern "C" {
        fn titan_graph_new(device: i8, err: *mut c_char, err_len: usize) -> *mut c_void;
        fn titan_graph_free(graph: *mut c_void);
        fn titan_graph_begin_side(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_end_side(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_capture_begin(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_capture_end(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_graph_replay(graph: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
        fn titan_cuda_set_device(device: i8, err: *mut c_char, err_len: usize) -> i32;
        fn titan_cuda_finish_within(
            device: i8,
            timeout_ms: i64,
            done: *mut bool,
            err: *mut c_char,
            err_len: usize,
        ) -> i32;
    }

    /// Makes CUDA `device` this process's current device (a rank's own GPU, before its process
    /// group forms); nothing for the CPU.
    pub fn make_current(device: Device) -> Result<()> {
        let Some(index) = cuda_index(device)? else {
            return Ok(());
        };
        call("making the rank's GPU current", |err, len| {
            // SAFETY: plain arguments; the error buffer is `call`'s.
            unsafe { titan_cuda_set_device(index, err, len) }
        })
    }

    /// Waits for the work queued on `device`'s current stream (a replayed graph's included),
    /// at most `timeout`; false when it has not finished by then. On the CPU, true at once.
    pub fn finish_within(device: Device, timeout: std::time::Duration) -> Result<bool> {
        let Some(index) = cuda_index(device)? else {
            return Ok(true);
        };
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let mut done = false;
        call("waiting for the device's work", |err, len| {
            // SAFETY: `done` outlives the call; the error buffer is `call`'s.
            unsafe { titan_cuda_finish_within(index, ms, &mut done, err, len) }
        })?;
        Ok(done)
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
mod without_cuda {
    use tch::Device;

    use crate::{Error, Result};

    /// How to get a build with CUDA graphs.
    const REBUILD: &str = "set TITAN_CUDA_INCLUDE and rebuild";

    /// A CUDA graph in a build that found no CUDA headers: [`CudaGraph::new`] fails, and each
    /// method is an error saying what it could not do, never a silent no-op.
    #[derive(Debug)]
    pub struct CudaGraph {
        // Not public: outside this file a graph comes only from `new`, which fails (the tests
        // build one to check that its methods fail too).
        pub(super) _unbuilt: (),
    }

    /// Nothing: without CUDA's headers no process group reduces CUDA tensors, and libtorch's
    /// own guards choose each call's device.
    pub fn make_current(_device: Device) -> Result<()> {
        Ok(())
    }

    /// Waits for all of `device`'s work (this build cannot poll it): true once it is done.
    pub fn finish_within(device: Device, _timeout: std::time::Duration) -> Result<bool> {
        crate::device::synchronize(device);
        Ok(true)
    }

    /// The error of a graph operation this build cannot do.
    fn without_headers(what: &str) -> Error {
        Error::Training(format!(
            "this titan was built without CUDA's headers: no CUDA graph {what} ({REBUILD})"
        ))
    }

    impl CudaGraph {
        /// Always an error in this build.
        pub fn new(device: Device) -> Result<Self> {
            Err(Error::config(
                "device",
                format!("{device:?}"),
                format!(
                    "titan was built without CUDA's headers, so it cannot capture CUDA graphs \
                     ({REBUILD})"
                ),
            ))
        }

        /// Always an error in this build, and `work` does not run: there is no side stream.
        pub fn on_side_stream<T>(&mut self, _work: impl FnOnce() -> Result<T>) -> Result<T> {
            Err(without_headers("whose side stream could run this work"))
        }

        /// Always an error in this build, and `work` does not run: run uncaptured, it would
        /// pass for a capture that never happened.
        pub fn capture<T>(&mut self, _work: impl FnOnce() -> Result<T>) -> Result<T> {
            Err(without_headers("to capture into"))
        }

        /// Always an error in this build: there is no capture to replay.
        pub fn replay(&mut self) -> Result<()> {
            Err(without_headers("to replay"))
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::{CudaGraph, has_cuda_graphs};

    /// The C++ shim holds the graph functions exactly when these bindings do: both follow
    /// `build.rs`'s search for CUDA's headers.
    #[test]
    fn the_shim_and_its_bindings_agree_on_cuda_graphs() {
        assert_eq!(has_cuda_graphs(), cfg!(titan_cuda));
    }

    /// The CPU has nothing to wait for; on a GPU, queued work finishes well within a minute
    /// (the test names CUDA so the GPU check script picks it).
    #[test]
    fn on_cuda_queued_work_finishes_within_a_timeout() -> crate::Result<()> {
        use std::time::Duration;
        assert!(super::finish_within(Device::Cpu, Duration::ZERO)?);
        if !tch::Cuda::is_available() {
            eprintln!("no CUDA device: only the CPU's case is checked");
            return Ok(());
        }
        let x = tch::Tensor::f_randn([2048, 2048], (tch::Kind::Float, Device::Cuda(0)))?;
        let _queued = x.f_matmul(&x)?.f_matmul(&x)?;
        assert!(super::finish_within(
            Device::Cuda(0),
            Duration::from_secs(60)
        )?);
        Ok(())
    }

    #[test]
    fn a_graph_needs_a_cuda_device() {
        let err = CudaGraph::new(Device::Cpu)
            .expect_err("a CPU graph")
            .to_string();
        assert!(err.contains("Cpu"), "{err}");
    }

    /// Without CUDA's headers no graph operation silently does nothing, and none runs the work
    /// it is handed.
    #[cfg(not(titan_cuda))]
    #[test]
    fn without_cuda_every_graph_operation_is_an_error() {
        let mut graph = CudaGraph { _unbuilt: () };
        let err = graph.replay().expect_err("replay").to_string();
        assert!(
            err.contains("without CUDA's headers: no CUDA graph to replay"),
            "{err}"
        );
        let mut ran = false;
        let err = graph
            .capture(|| {
                ran = true;
                Ok(())
            })
            .expect_err("capture")
            .to_string();
        assert!(err.contains("no CUDA graph to capture into"), "{err}");
        let err = graph
            .on_side_stream(|| {
                ran = true;
                Ok(())
            })
            .expect_err("side stream")
            .to_string();
        assert!(err.contains("side stream"), "{err}");
        assert!(!ran, "a graph call ran its work");
    }
}
