//! Link settings shared by every package that links libtorch (`titan` and the root package,
//! whose manifest points here): an rpath to the project-local libtorch so binaries run without
//! `LD_LIBRARY_PATH`, and `libtorch_cuda.so` kept in `NEEDED` so CUDA works when a GPU is there.
//! Link flags live here rather than in `RUSTFLAGS`, which would rebuild all of tch.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // torch-sys asks for torch_cuda, but `--as-needed` drops it because nothing references its
    // symbols directly; without it in NEEDED, libtorch never registers its CUDA backend.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
