//! The CUDA caching allocator: its memory statistics, their peaks, and its cache. On CPU titan
//! reads no statistics, and there is no cache to empty (libtorch's CPU allocator keeps none).
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::c_char;

use tch::Device;

use super::{call, cuda_index};
use crate::{Error, Result};

unsafe extern "C" {
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
}

/// c10's `DeviceType::CUDA`.
const CUDA: i8 = 1;

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

/// The CUDA caching allocator's statistics for `device`; `None` off CUDA (titan reads no other
/// allocator's).
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

/// Resets the peaks [`device_memory`] reports for `device`; off CUDA it reports none, so there
/// is nothing to reset.
pub fn reset_peak_memory(device: Device) -> Result<()> {
    let Some(index) = cuda_index(device)? else {
        return Ok(());
    };
    call("CUDA memory statistics", |err, len| {
        // SAFETY: plain values in, error buffer out.
        unsafe { titan_reset_peak_memory(CUDA, index, err, len) }
    })
}

/// Returns the CUDA caching allocator's cached, unused blocks to the device (nothing to return
/// on CPU). An error on other devices (MPS, Vulkan): their allocators cache too, and titan does
/// not reach them.
pub fn empty_cache(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(_) => call("CUDA empty cache", |err, len| {
            // SAFETY: plain value in, error buffer out.
            unsafe { titan_empty_cache(CUDA, err, len) }
        }),
        other => Err(Error::config(
            "device",
            format!("{other:?}"),
            "titan empties only CUDA's caching allocator",
        )),
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::{device_memory, empty_cache, reset_peak_memory};
    use crate::Result;

    #[test]
    fn the_cpu_has_no_statistics_and_no_cache() -> Result<()> {
        assert_eq!(device_memory(Device::Cpu)?, None);
        reset_peak_memory(Device::Cpu)?;
        empty_cache(Device::Cpu)?;
        Ok(())
    }

    #[test]
    fn a_cache_titan_cannot_empty_is_an_error_not_a_no_op() {
        let err = empty_cache(Device::Mps).expect_err("MPS").to_string();
        assert!(err.contains("Mps") && err.contains("only CUDA"), "{err}");
    }
}
