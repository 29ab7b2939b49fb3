//! torch-sys asks the linker for `libtorch_cuda.so`, but `--as-needed` drops it unless
//! `titan/build.rs` keeps it; without it libtorch never registers CUDA and
//! `tch::Cuda::is_available()` is false even on a GPU machine.

use std::process::Command;

use anyhow::{Context, Result};

#[test]
fn tiny_llama_binary_needs_libtorch_cuda() -> Result<()> {
    let libtorch =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".libtorch/site/torch/lib");
    if !libtorch.join("libtorch_cuda.so").exists() {
        eprintln!("skipped: this libtorch has no libtorch_cuda.so (a CPU-only build)");
        return Ok(());
    }
    let bin = env!("CARGO_BIN_EXE_tiny_llama");
    let out = Command::new("readelf")
        .args(["-d", bin])
        .output()
        .context("running readelf (binutils)")?;
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        needed.iter().any(|l| l.contains("[libtorch_cuda.so]")),
        "libtorch_cuda.so missing from NEEDED of {bin}:\n{}",
        needed.join("\n")
    );
    assert!(
        dynamic.contains("RUNPATH") || dynamic.contains("RPATH"),
        "no rpath: the binary would need LD_LIBRARY_PATH"
    );
    Ok(())
}
