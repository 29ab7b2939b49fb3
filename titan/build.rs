//! Link settings shared by every package that links libtorch (`titan` and the root package,
//! whose manifest points here): an rpath to the project-local libtorch so binaries run without
//! `LD_LIBRARY_PATH`, and `libtorch_cuda.so` kept in `NEEDED` so CUDA works when a GPU is there.
//! For `titan` itself it also compiles `csrc/shim.cpp`, the few libtorch functions tch does not
//! expose (fused optimizers, allocator statistics, CUDA graphs), `csrc/fused_cpu.cpp`, fused
//! CPU kernels for the Llama block, `csrc/cross_entropy.cpp`, the chunked cross-entropy,
//! `csrc/c10d.cpp`, torch's process groups, and `csrc/profiler.cpp`, libtorch's Kineto
//! profiler, against the same headers.
//! Link flags live here rather than in `RUSTFLAGS`, which would rebuild all of tch.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=TITAN_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(titan_cuda)");
    let is_titan = std::env::var("CARGO_PKG_NAME").as_deref() == Ok("titan");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        assert!(
            !is_titan,
            "titan compiles a C++ shim against libtorch's headers: set LIBTORCH \
             (run `bash .cargo/libtorch.sh`; .cargo/config.toml points LIBTORCH at it)"
        );
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // torch-sys asks for torch_cuda, but `--as-needed` drops it because nothing references its
    // symbols directly; without it in NEEDED, libtorch never registers its CUDA backend.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // The shim's replacement for MKL's vendor check (see csrc/shim.cpp) must be linked in
    // (`--undefined`, even where nothing else pulls the shim's object) and in the executable's
    // dynamic symbol table to take the place of libtorch_cpu.so's own. GNU/ELF linkers only.
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ARCH") == "x86_64" {
        println!("cargo:rustc-link-arg=-Wl,--undefined=mkl_serv_intel_cpu_true");
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=mkl_serv_intel_cpu_true");
    }
    if is_titan {
        shim(&libtorch, &lib);
    }
}

/// Compiles the C++ shim; its CUDA graph functions only where CUDA's headers are found (the
/// PyPI install carries them) and libtorch has its CUDA libraries.
fn shim(libtorch: &Path, lib: &Path) {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/fused_cpu.cpp");
    println!("cargo:rerun-if-changed=csrc/cross_entropy.cpp");
    println!("cargo:rerun-if-changed=csrc/guarded.h");
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    println!("cargo:rerun-if-changed=csrc/profiler.cpp");
    println!("cargo:rerun-if-changed=csrc/gloo_names");
    let include = libtorch.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("csrc/shim.cpp")
        .file("csrc/fused_cpu.cpp")
        .file("csrc/cross_entropy.cpp")
        .file("csrc/c10d.cpp")
        .file("csrc/profiler.cpp")
        .include(&include)
        // c10d's headers reach libtorch's C++ API (`torch/types.h`).
        .include(include.join("torch/csrc/api/include"))
        // Declarations of the Gloo names `ProcessGroupGloo.hpp` mentions (see its README).
        .include("csrc/gloo_names")
        // `at::parallel_for` is inline OpenMP: compiled with it, and linked against libtorch's
        // own libgomp (below), the fused kernels share libtorch's thread pool.
        .flag("-fopenmp")
        // As libtorch itself is built: lets the kernels' clamps and selects vectorize (neither
        // flag changes a result); -O3 vectorizes the loops in every profile.
        .flag("-fno-math-errno")
        .flag("-fno-trapping-math")
        .opt_level(3)
        // As torch-sys builds its own bindings: the new C++ ABI unless told otherwise.
        .define(
            "_GLIBCXX_USE_CXX11_ABI",
            std::env::var("LIBTORCH_CXX11_ABI")
                .ok()
                .filter(|v| v == "0")
                .map_or("1", |_| "0"),
        )
        // libtorch's headers are noisy; the shim's own code is small and reviewed.
        .flag_if_supported("-w");
    let cuda = cuda_include(libtorch).filter(|_| lib.join("libc10_cuda.so").exists());
    if let Some(dirs) = &cuda {
        build.includes(dirs).define("TITAN_CUDA", None);
        if let Some(nccl) = nccl_include(libtorch, dirs) {
            build.includes(nccl).define("TITAN_NCCL", None);
        }
    }
    build.compile("titan_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // libtorch's bundled OpenMP runtime, by file name (there is no `libgomp.so` beside it).
    if lib.join("libgomp.so.1").exists() {
        println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
    } else {
        println!("cargo:rustc-link-lib=dylib=gomp");
    }
    if cuda.is_some() {
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-cfg=titan_cuda");
    }
}

/// Folders holding CUDA's runtime headers: `cuda_runtime_api.h` from `TITAN_CUDA_INCLUDE`,
/// PyPI's `nvidia/cu13` beside libtorch, `CUDA_HOME` or `/usr/local/cuda`, plus a folder with
/// `crt/host_config.h` where that one lacks it (PyPI's runtime wheel does; Triton's copy, also
/// beside libtorch, has it).
fn cuda_include(libtorch: &Path) -> Option<Vec<PathBuf>> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("TITAN_CUDA_INCLUDE") {
        candidates.push(dir.into());
    }
    let site = libtorch.parent();
    if let Some(site) = site {
        for cu in ["cu13", "cu12"] {
            candidates.push(site.join("nvidia").join(cu).join("include"));
        }
        candidates.push(site.join("nvidia/cuda_runtime/include"));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.push("/usr/local/cuda/include".into());
    let runtime = candidates
        .iter()
        .find(|dir| dir.join("cuda_runtime_api.h").exists())?
        .clone();
    if runtime.join("crt/host_config.h").exists() {
        return Some(vec![runtime]);
    }
    let crt = candidates
        .into_iter()
        .chain(site.map(|s| s.join("triton/backends/nvidia/include")))
        .find(|dir| dir.join("crt/host_config.h").exists())?;
    Some(vec![runtime, crt])
}

/// Folders that `ProcessGroupNCCL.hpp` needs beyond CUDA's runtime headers: NCCL's own (PyPI's
/// `nvidia/nccl` beside libtorch) and CCCL's `nv/target`, which `.cargo/libtorch.sh` installs
/// into `.libtorch/cccl` (the torch wheel does not pull it). None when either is missing: then
/// titan has no NCCL process group, and says so when one is asked for.
fn nccl_include(libtorch: &Path, cuda: &[PathBuf]) -> Option<Vec<PathBuf>> {
    let site = libtorch.parent()?;
    let nccl = site.join("nvidia/nccl/include");
    if !nccl.join("nccl.h").exists() {
        return None;
    }
    let mut candidates: Vec<PathBuf> = cuda.to_vec();
    if let Some(root) = site.parent() {
        candidates.push(root.join("cccl/nvidia/cu13/include"));
        candidates.push(root.join("cccl/nvidia/cu13/include/cccl"));
    }
    let cccl = candidates
        .into_iter()
        .find(|dir| dir.join("nv/target").exists())?;
    Some(vec![nccl, cccl])
}
