//! Step time of tiny_llama (forward + backward + AdamW) on CPU at batch 8 × 512, and on CUDA at
//! the real batch 32 × 512 when a GPU is there (timings synchronize the device; fp32 and bf16,
//! eager and as one captured CUDA graph); the forward pass alone; and, in the same run,
//! PyTorch doing the same step on the same libtorch (`benches/baseline/torch_step.py`, Hugging
//! Face `LlamaForCausalLM`: eager, and `torch.compile` on CUDA; on CPU also with MKL's vendor
//! check answered as titan answers it, `benches/baseline/mkl_vendor.c`), with the ratios.
//! The baseline needs `bash benches/baseline/setup.sh` once (transformers into `.bench/site`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use titan::data::{HfLabels, TokenIds};
use titan::shim::CudaGraph;
use titan::tch::{Device, Kind, Tensor};
use titan::{AdamW, AdamWConfig, CausalLmLoss, Llama, LlamaConfig, Loss, Model, Optimizer};

// What the experiment binaries allocate with (`titan::main!`), so both are measured alike.
#[global_allocator]
static ALLOCATOR: titan::experiment::MiMalloc = titan::experiment::MiMalloc;

const SEQ: i64 = 512;

/// How a titan step runs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Variant {
    /// Compute in bf16 (f32 master weights), as `training.precision = "bf16"`.
    bf16: bool,
    /// The whole step captured once as a CUDA graph and replayed.
    graph: bool,
}

impl Variant {
    const EAGER: Variant = Variant {
        bf16: false,
        graph: false,
    };

    fn name(self) -> String {
        format!(
            "{}{}",
            if self.bf16 { "bf16" } else { "fp32" },
            if self.graph { "+graph" } else { "" }
        )
    }
}

/// tiny_llama's model, optimizer and one batch of random ids.
struct Setup {
    model: Llama,
    opt: AdamW,
    input: TokenIds,
    labels: HfLabels,
    graph: Option<CudaGraph>,
}

impl Setup {
    fn new(device: Device, batch: i64, variant: Variant) -> titan::Result<Self> {
        titan::device::seed_everything(0);
        let config = LlamaConfig::tiny();
        let mut model = Llama::new(config.clone(), device)?;
        if variant.bf16 {
            model = model.with_compute_kind(Kind::BFloat16)?;
        }
        let opt = AdamW::new(model.parameters(), AdamWConfig::default())?;
        let ids = Tensor::f_randint(config.vocab_size, [batch, SEQ], (Kind::Int64, device))?;
        let mut setup = Self {
            model,
            opt,
            input: TokenIds(ids.shallow_clone()),
            labels: HfLabels(ids),
            graph: None,
        };
        if variant.graph {
            // Warm up on a side stream (lazy initialisation stays out of the graph), then record
            // one whole step; replays reuse its input buffers and memory.
            let mut graph = CudaGraph::new(device)?;
            graph.on_side_stream(|| (0..3).try_for_each(|_| setup.eager_step()))?;
            graph.capture(|| setup.eager_step())?;
            setup.graph = Some(graph);
        }
        Ok(setup)
    }

    fn eager_step(&mut self) -> titan::Result<()> {
        self.opt.zero_grad()?;
        let logits = self.model.forward(&self.input)?;
        CausalLmLoss.loss(&logits, &self.labels)?.f_backward()?;
        self.opt.step()
    }

    fn step(&mut self) {
        match &mut self.graph {
            Some(graph) => graph.replay().expect("replay"),
            None => self.eager_step().expect("step"),
        }
    }

    fn forward(&self) {
        let _guard = titan::tch::no_grad_guard();
        drop(self.model.forward(&self.input).expect("forward"));
    }
}

fn timed(device: Device, iters: u64, mut f: impl FnMut()) -> Duration {
    titan::device::synchronize(device);
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    titan::device::synchronize(device);
    start.elapsed()
}

fn bench_device(c: &mut Criterion, device: Device, batch: i64) {
    // CUDA steps take milliseconds: a short measurement is plenty there.
    let secs = if device.is_cuda() { 3 } else { 20 };
    let variants: &[Variant] = if device.is_cuda() && graphs_enabled() {
        &[
            Variant::EAGER,
            Variant {
                bf16: true,
                graph: false,
            },
            Variant {
                bf16: true,
                graph: true,
            },
        ]
    } else if device.is_cuda() {
        &[
            Variant::EAGER,
            Variant {
                bf16: true,
                graph: false,
            },
        ]
    } else {
        &[Variant::EAGER]
    };
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(secs));
    for &variant in variants {
        let mut setup = Setup::new(device, batch, variant).expect("setup");
        group.bench_function(
            format!("tiny_llama/{device:?}/b{batch}x{SEQ}/{}", variant.name()),
            |b| b.iter_custom(|iters| timed(device, iters, || setup.step())),
        );
    }
    group.finish();
    let setup = Setup::new(device, batch, Variant::EAGER).expect("setup");
    let mut group = c.benchmark_group("forward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(secs.min(10)));
    group.bench_function(format!("tiny_llama/{device:?}/b{batch}x{SEQ}"), |b| {
        b.iter_custom(|iters| timed(device, iters, || setup.forward()))
    });
    group.finish();
}

/// Median seconds per titan step over `steps` steps after 2 warm-up steps.
fn titan_step_s(device: Device, batch: i64, steps: usize, variant: Variant) -> titan::Result<f64> {
    let mut setup = Setup::new(device, batch, variant)?;
    for _ in 0..2 {
        setup.step();
    }
    let mut times: Vec<f64> = (0..steps)
        .map(|_| timed(device, 1, || setup.step()).as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// `benches/baseline/mkl_vendor.c` compiled with `cc` into a library for `LD_PRELOAD`.
fn mkl_vendor_preload() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-baseline");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let lib = dir.join("libmkl_vendor.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(root.join("benches/baseline/mkl_vendor.c"))
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(lib)
}

/// PyTorch's median seconds per step from the baseline script (`mode` eager or compile), with
/// `preload` in `LD_PRELOAD` when given, or why it did not run.
fn pytorch_step_s(
    device: Device,
    batch: i64,
    steps: usize,
    bf16: bool,
    mode: &str,
    preload: Option<&Path>,
) -> Result<f64, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-baseline");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("llama_tiny.json");
    let json = serde_json::to_string(&LlamaConfig::tiny()).map_err(|e| e.to_string())?;
    std::fs::write(&config, json).map_err(|e| e.to_string())?;
    let device_arg = match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    };
    let pythonpath = format!(
        "{}:{}",
        root.join(".libtorch/site").display(),
        root.join(".bench/site").display()
    );
    let mut python = Command::new("python3");
    if let Some(lib) = preload {
        python.env("LD_PRELOAD", lib);
    }
    let out = python
        .arg(root.join("benches/baseline/torch_step.py"))
        .args([
            config.display().to_string(),
            batch.to_string(),
            SEQ.to_string(),
            steps.to_string(),
            device_arg,
            titan::tch::get_num_threads().to_string(),
            if bf16 { "bf16" } else { "fp32" }.to_string(),
            mode.to_string(),
        ])
        .env("PYTHONPATH", pythonpath)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default().to_string();
        return Err(format!(
            "{last} (run `bash benches/baseline/setup.sh` once to install transformers)"
        ));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    value["step_s"]
        .as_f64()
        .ok_or_else(|| format!("no step_s in {line}"))
}

/// CUDA graph variants run where this build can capture them, unless `TITAN_BENCH_GRAPH=0`.
fn graphs_enabled() -> bool {
    titan::shim::has_cuda_graphs() && std::env::var("TITAN_BENCH_GRAPH").map_or(true, |v| v != "0")
}

/// Weights after 3 warm-up steps and `replays` replays of a captured step, against the same
/// number of eager steps from the same start: the largest difference (fp32).
fn graph_vs_eager(device: Device, batch: i64, replays: usize) -> titan::Result<f64> {
    let mut graphed = Setup::new(
        device,
        batch,
        Variant {
            bf16: false,
            graph: true,
        },
    )?;
    let mut eager = Setup::new(device, batch, Variant::EAGER)?;
    for _ in 0..replays {
        graphed.step();
    }
    for _ in 0..3 + replays {
        eager.step();
    }
    let mut worst = 0f64;
    for ((_, g), (_, e)) in graphed
        .model
        .parameters()
        .named()
        .iter()
        .zip(eager.model.parameters().named())
    {
        worst = worst.max(g.f_sub(&e)?.f_abs()?.f_max()?.f_double_value(&[])?);
    }
    Ok(worst)
}

fn ms(result: &Result<f64, String>) -> String {
    match result {
        Ok(s) => format!("{:.2} ms", s * 1e3),
        Err(_) => "not run".into(),
    }
}

fn ratio(a: &Result<f64, String>, b: &Result<f64, String>) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// Times titan and PyTorch on the CPU in this run and prints a Markdown table: PyTorch as it
/// comes, and PyTorch with the same answer to MKL's vendor check that titan gives (which only
/// changes anything on non-Intel CPUs), with titan's step time over each.
fn compare_cpu(batch: i64) {
    let steps = 5;
    eprintln!(
        "baseline: tiny_llama Cpu {batch}x{SEQ}, {} threads, {steps} timed steps (median); titan's MKL vendor check off: {}",
        titan::tch::get_num_threads(),
        titan::shim::mkl_vendor_check_off()
    );
    let titan = titan_step_s(Device::Cpu, batch, steps, Variant::EAGER).map_err(|e| e.to_string());
    let torch = pytorch_step_s(Device::Cpu, batch, steps, false, "eager", None);
    let torch_fixed = mkl_vendor_preload()
        .and_then(|lib| pytorch_step_s(Device::Cpu, batch, steps, false, "eager", Some(&lib)));
    for (what, result) in [
        ("titan", &titan),
        ("PyTorch eager", &torch),
        ("PyTorch eager, MKL vendor check off", &torch_fixed),
    ] {
        if let Err(why) = result {
            eprintln!("baseline: {what} not run: {why}");
        }
    }
    eprintln!(
        "| titan | PyTorch eager | PyTorch eager, MKL vendor check off | titan / PyTorch eager | titan / PyTorch, MKL vendor check off |"
    );
    eprintln!("|---|---|---|---|---|");
    eprintln!(
        "| {} | {} | {} | {} | {} |",
        ms(&titan),
        ms(&torch),
        ms(&torch_fixed),
        ratio(&titan, &torch),
        ratio(&titan, &torch_fixed)
    );
}

/// Times titan and PyTorch on CUDA in this run and prints a Markdown table: per precision
/// (fp32, bf16), titan eager and as a CUDA graph, PyTorch eager and `torch.compile`, and titan's
/// step time over PyTorch's (below 1: titan is faster).
fn compare_cuda(device: Device, batch: i64) {
    let steps = 50;
    if graphs_enabled() {
        match graph_vs_eager(device, batch, 5) {
            Ok(diff) => eprintln!(
                "baseline: CUDA graph check: weights after 8 steps, graphed vs eager, max |Δ| {diff:.2e}"
            ),
            Err(e) => eprintln!("baseline: CUDA graph check failed: {e}"),
        }
    }
    eprintln!(
        "baseline: tiny_llama {device:?} {batch}x{SEQ}, {} threads, {steps} timed steps (median)",
        titan::tch::get_num_threads()
    );
    eprintln!(
        "| precision | titan eager | titan CUDA graph | PyTorch eager | torch.compile | titan eager / PyTorch eager | best titan / PyTorch eager | best titan / torch.compile |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    for bf16 in [false, true] {
        let titan = |graph| {
            titan_step_s(device, batch, steps, Variant { bf16, graph }).map_err(|e| e.to_string())
        };
        let eager = titan(false);
        let graph = if graphs_enabled() {
            titan(true)
        } else {
            Err("TITAN_BENCH_GRAPH=0".to_string())
        };
        let torch = pytorch_step_s(device, batch, steps, bf16, "eager", None);
        let compiled = pytorch_step_s(device, batch, steps, bf16, "compile", None);
        for (what, result) in [
            ("titan eager", &eager),
            ("titan graph", &graph),
            ("PyTorch eager", &torch),
            ("torch.compile", &compiled),
        ] {
            if let Err(why) = result {
                eprintln!("baseline: {what} not run: {why}");
            }
        }
        let best = match (&eager, &graph) {
            (Ok(e), Ok(g)) => Ok(e.min(*g)),
            (Ok(e), Err(_)) => Ok(*e),
            (Err(e), _) => Err(e.clone()),
        };
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            if bf16 { "bf16" } else { "fp32" },
            ms(&eager),
            ms(&graph),
            ms(&torch),
            ms(&compiled),
            ratio(&eager, &torch),
            ratio(&best, &torch),
            ratio(&best, &compiled)
        );
    }
}

fn train_step(c: &mut Criterion) {
    // TITAN_BENCH_DEVICES=cuda skips the CPU half (on a GPU machine whose time is counted).
    let devices = std::env::var("TITAN_BENCH_DEVICES").unwrap_or_else(|_| "cpu,cuda".into());
    if devices.contains("cpu") {
        bench_device(c, Device::Cpu, 8);
        compare_cpu(8);
    }
    if devices.contains("cuda") && titan::tch::Cuda::is_available() {
        bench_device(c, Device::Cuda(0), 32);
        compare_cuda(Device::Cuda(0), 32);
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
