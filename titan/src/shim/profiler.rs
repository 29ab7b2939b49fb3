//! libtorch's Kineto profiler (`csrc/profiler.cpp`), as `torch.profiler` drives it: started over
//! CPU operators (and CUDA kernels), each step in a `ProfilerStep#N` scope, stopped into a
//! Chrome trace that Perfetto, `chrome://tracing` and TensorBoard's profiler open.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::{CString, c_char, c_void};
use std::marker::PhantomData;
use std::path::Path;

use super::call;
use crate::{Error, Result};

unsafe extern "C" {
    fn titan_profiler_start(cuda: bool, err: *mut c_char, err_len: usize) -> i32;
    fn titan_profiler_stop(path: *const c_char, err: *mut c_char, err_len: usize) -> i32;
    fn titan_profiler_drop();
    fn titan_scope_begin(name: *const c_char, err: *mut c_char, err_len: usize) -> *mut c_void;
    fn titan_scope_end(scope: *mut c_void);
}

/// On a machine without an NVIDIA GPU (none under `/proc/driver/nvidia/gpus`; CUDA itself is
/// not initialised to tell), sets `KINETO_LOG_LEVEL` above libkineto's errors unless it is set,
/// so that a trace does not log libkineto's harmless "gpuGetDeviceCount failed" line. It changes
/// the environment, so only a binary's `main` calls it, first, before any thread exists.
pub(crate) fn quiet_kineto_without_gpu() {
    let gpus = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if !gpus && std::env::var_os("KINETO_LOG_LEVEL").is_none() {
        // SAFETY: called first thing in `main`, before this process starts any thread, so no
        // thread reads the environment while it changes.
        unsafe { std::env::set_var("KINETO_LOG_LEVEL", "5") };
    }
}

/// A running profiler; dropped without [`Profiler::save`], it stops and keeps nothing. It
/// belongs to the thread that started it (libtorch's profiler state is the thread's), so it is
/// neither `Send` nor `Sync`.
#[derive(Debug)]
pub struct Profiler {
    running: bool,
    thread_bound: PhantomData<*const ()>,
}

impl Profiler {
    /// Starts profiling this thread's operators (with their input shapes), and with `cuda` the
    /// CUDA runtime and kernels. One profiler at a time: a second start is an error.
    pub fn start(cuda: bool) -> Result<Self> {
        call("starting the profiler", |err, len| {
            // SAFETY: plain values and the error buffer.
            unsafe { titan_profiler_start(cuda, err, len) }
        })?;
        Ok(Self {
            running: true,
            thread_bound: PhantomData,
        })
    }

    /// Stops profiling and writes the trace to `path` (Chrome trace JSON; through a temporary
    /// file beside it, so a crash leaves no partial trace, and a failed write leaves none).
    pub fn save(mut self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let c_path = CString::new(tmp.to_string_lossy().as_bytes())
            .map_err(|_| Error::Training(format!("{}: a NUL in the path", tmp.display())))?;
        // The call stops the profiler whether or not it writes.
        self.running = false;
        let written = call("writing the profiler's trace", |err, len| {
            // SAFETY: `c_path` is NUL-terminated and outlives the call.
            unsafe { titan_profiler_stop(c_path.as_ptr(), err, len) }
        })
        .map_err(|e| Error::Training(format!("{}: {e}", tmp.display())))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(&tmp, e)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Marks what runs until the returned scope drops as `name` in the trace (e.g.
    /// `ProfilerStep#3`, the step markers TensorBoard's profiler splits a trace by).
    pub fn scope(&self, name: &str) -> Result<Scope<'_>> {
        let c_name = CString::new(name)
            .map_err(|_| Error::Training(format!("{name:?}: a NUL in a scope's name")))?;
        let mut raw = std::ptr::null_mut();
        call("a profiler scope", |err, len| {
            // SAFETY: `c_name` is NUL-terminated and outlives the call.
            raw = unsafe { titan_scope_begin(c_name.as_ptr(), err, len) };
            i32::from(raw.is_null())
        })?;
        Ok(Scope {
            raw,
            profiler: PhantomData,
        })
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.running {
            // SAFETY: takes nothing; stops the profiler if it runs.
            unsafe { titan_profiler_drop() }
        }
    }
}

/// A named span of the trace, closed when dropped (before its profiler stops).
#[derive(Debug)]
pub struct Scope<'p> {
    raw: *mut c_void,
    profiler: PhantomData<&'p Profiler>,
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `titan_scope_begin` and is closed once.
        unsafe { titan_scope_end(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// A trace holds the operators run while profiling, inside their step's scope; a second
    /// profiler cannot start beside a running one, and one dropped unsaved lets the next start.
    #[test]
    fn a_trace_holds_the_steps_operators() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("trace.json");
        let profiler = Profiler::start(false)?;
        assert!(Profiler::start(false).is_err(), "one profiler at a time");
        {
            let _step = profiler.scope("ProfilerStep#7")?;
            let a = Tensor::f_ones([64, 64], (Kind::Float, Device::Cpu))?;
            let _ = a.f_matmul(&a)?.f_sum(Kind::Float)?;
        }
        profiler.save(&path)?;
        let trace: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).map_err(|e| Error::io(&path, e))?)?;
        let names: Vec<&str> = trace["traceEvents"]
            .as_array()
            .map(|events| events.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        for want in ["ProfilerStep#7", "aten::matmul", "aten::sum"] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        assert!(!dir.path().join("trace.json.tmp").exists());
        drop(Profiler::start(false)?);
        drop(Profiler::start(false)?);
        Ok(())
    }
}
