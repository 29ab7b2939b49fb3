//! TF32 for float32 matmuls on CUDA: the process-wide flag PyTorch calls
//! `torch.backends.cuda.matmul.allow_tf32` (`training.tf32`).
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::c_char;

use super::call;
use crate::Result;

unsafe extern "C" {
    fn titan_set_cuda_matmul_tf32(on: i32, err: *mut c_char, err_len: usize) -> i32;
    fn titan_cuda_matmul_tf32(on: *mut i32, err: *mut c_char, err_len: usize) -> i32;
}

/// Lets float32 matmuls on CUDA use TF32 tensor cores (`on`), or keeps them IEEE float32.
pub fn set_cuda_matmul_tf32(on: bool) -> Result<()> {
    // SAFETY: plain values and the error buffer `call` provides.
    call("setting TF32 for CUDA matmuls", |err, len| unsafe {
        titan_set_cuda_matmul_tf32(i32::from(on), err, len)
    })
}

/// Whether float32 matmuls on CUDA may use TF32.
pub fn cuda_matmul_tf32() -> Result<bool> {
    let mut on = 0;
    // SAFETY: `on` is a valid place for the shim's answer; `err` is `call`'s buffer.
    call("reading TF32 for CUDA matmuls", |err, len| unsafe {
        titan_cuda_matmul_tf32(&mut on, err, len)
    })?;
    Ok(on != 0)
}

#[cfg(test)]
mod tests {
    use super::{cuda_matmul_tf32, set_cuda_matmul_tf32};
    use crate::Result;

    #[test]
    fn the_flag_is_libtorchs_and_reads_back() -> Result<()> {
        // PyTorch's default: IEEE float32 matmuls.
        let before = cuda_matmul_tf32()?;
        set_cuda_matmul_tf32(true)?;
        assert!(cuda_matmul_tf32()?);
        set_cuda_matmul_tf32(false)?;
        assert!(!cuda_matmul_tf32()?);
        set_cuda_matmul_tf32(before)
    }
}
