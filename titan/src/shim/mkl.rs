//! MKL's CPU vendor check, which the shim replaces (`csrc/shim.cpp`; `build.rs` exports the
//! replacement from the executable): whether it took effect in this process.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

unsafe extern "C" {
    fn titan_mkl_vendor_check_off() -> i32;
}

/// Whether MKL picks its CPU kernels by instruction set alone in this process: titan's shim
/// replaces MKL's Intel-only vendor check, so AMD CPUs get the AVX2 kernels Intel CPUs get
/// (`TITAN_MKL_VENDOR_CHECK=1` keeps MKL's check). False without MKL, where the executable does
/// not export the replacement, or with `TITAN_MKL_VENDOR_CHECK=1`.
pub fn mkl_vendor_check_off() -> bool {
    // SAFETY: takes no arguments; only looks up a symbol and reads an environment variable.
    unsafe { titan_mkl_vendor_check_off() == 1 }
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
