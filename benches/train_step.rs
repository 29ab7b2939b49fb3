//! Step time of tiny_llama (forward + backward + AdamW) on CPU at batch 8 × 512, and on CUDA at
//! the real batch 32 × 512 when a GPU is there (timings synchronize the device; fp32 and bf16,
//! eager and as one captured CUDA graph); the forward pass alone; and, in the same run, for
//! each model size of `TITAN_BENCH_SIZES` (`tiny,125m,1b`; default `tiny`), PyTorch doing the
//! same step on the same libtorch (`benches/baseline/torch_step.py`, Hugging Face
//! `LlamaForCausalLM`: eager and `torch.compile`; on CPU also with MKL's vendor check answered
//! as titan answers it, `benches/baseline/mkl_vendor.c`), with the ratios, tokens/s, MFU and
//! peak memory. `TITAN_BENCH_BATCH=N` replaces every size's batch (for a sweep).
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

/// The sequence length of the criterion groups (tiny_llama's).
const SEQ: i64 = 512;

/// A model size the comparison with PyTorch runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Size {
    /// tiny_llama (4.4M parameters).
    Tiny,
    /// The ~125M experiment's Llama 3.
    M125,
    /// Llama 3.2 1B's shape.
    B1,
}

impl Size {
    /// The sizes `TITAN_BENCH_SIZES` names (`tiny,125m,1b`), tiny alone by default.
    fn chosen() -> Vec<Size> {
        let names = std::env::var("TITAN_BENCH_SIZES").unwrap_or_else(|_| "tiny".into());
        names
            .split(',')
            .filter_map(|name| match name.trim() {
                "tiny" => Some(Size::Tiny),
                "125m" => Some(Size::M125),
                "1b" => Some(Size::B1),
                "" => None,
                other => panic!("TITAN_BENCH_SIZES: unknown size {other:?} (tiny, 125m, 1b)"),
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny_llama",
            Size::M125 => "llama3_125m",
            Size::B1 => "llama3_1b",
        }
    }

    fn config(self) -> LlamaConfig {
        match self {
            Size::Tiny => LlamaConfig::tiny(),
            Size::M125 => LlamaConfig::llama3_125m(),
            Size::B1 => LlamaConfig::llama3_1b(),
        }
    }

    /// Batch × sequence on `device`: the CPU's fit a 2-core, 24 GiB machine (the 1B model's
    /// fp32 weights, gradients and AdamW moments alone are about 20 GB); on CUDA, the recipes'
    /// sequences. `TITAN_BENCH_BATCH` replaces the batch.
    fn shape(self, device: Device) -> (i64, i64) {
        let (batch, seq) = match (self, device.is_cuda()) {
            (Size::Tiny, false) => (8, 512),
            (Size::Tiny, true) => (32, 512),
            (Size::M125, false) => (2, 512),
            (Size::M125, true) => (16, 2048),
            (Size::B1, false) => (1, 256),
            (Size::B1, true) => (4, 2048),
        };
        let batch = std::env::var("TITAN_BENCH_BATCH")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(batch);
        (batch, seq)
    }
}

/// What the comparison runs on: a size, its batch and sequence, and the device.
#[derive(Debug, Clone, Copy)]
struct Shape {
    size: Size,
    device: Device,
    batch: i64,
    seq: i64,
}

impl Shape {
    fn new(size: Size, device: Device) -> Self {
        let (batch, seq) = size.shape(device);
        Self {
            size,
            device,
            batch,
            seq,
        }
    }

    /// tiny_llama at the criterion groups' batch.
    fn tiny(device: Device, batch: i64) -> Self {
        Self {
            size: Size::Tiny,
            device,
            batch,
            seq: SEQ,
        }
    }

    fn tokens(self) -> f64 {
        (self.batch * self.seq) as f64
    }
}

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

/// A model of one size, its optimizer and one batch of random ids.
struct Setup {
    model: Llama,
    opt: AdamW,
    input: TokenIds,
    labels: HfLabels,
    graph: Option<CudaGraph>,
}

impl Setup {
    fn new(shape: Shape, variant: Variant) -> titan::Result<Self> {
        titan::device::seed_everything(0);
        let (device, config) = (shape.device, shape.size.config());
        let mut model = Llama::new(config.clone(), device)?;
        if variant.bf16 {
            model = model.with_compute_kind(Kind::BFloat16)?;
        }
        let opt = AdamW::new(model.parameters(), AdamWConfig::default())?;
        let ids = Tensor::f_randint(
            config.vocab_size,
            [shape.batch, shape.seq],
            (Kind::Int64, device),
        )?;
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

    fn try_step(&mut self) -> titan::Result<()> {
        match &mut self.graph {
            Some(graph) => graph.replay(),
            None => self.eager_step(),
        }
    }

    fn step(&mut self) {
        self.try_step().expect("step");
    }

    fn forward(&self) {
        let _guard = titan::tch::no_grad_guard();
        drop(self.model.forward(&self.input).expect("forward"));
    }
}

/// Time of `iters` calls of `f`, the device synchronized before and after; the first error
/// stops it.
fn try_timed(
    device: Device,
    iters: u64,
    mut f: impl FnMut() -> titan::Result<()>,
) -> titan::Result<Duration> {
    titan::device::synchronize(device);
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    titan::device::synchronize(device);
    Ok(start.elapsed())
}

/// [`try_timed`] of a call that cannot fail (criterion's loops).
fn timed(device: Device, iters: u64, mut f: impl FnMut()) -> Duration {
    try_timed(device, iters, || {
        f();
        Ok(())
    })
    .expect("an infallible call")
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
        let mut setup = Setup::new(Shape::tiny(device, batch), variant).expect("setup");
        group.bench_function(
            format!("tiny_llama/{device:?}/b{batch}x{SEQ}/{}", variant.name()),
            |b| b.iter_custom(|iters| timed(device, iters, || setup.step())),
        );
    }
    group.finish();
    let setup = Setup::new(Shape::tiny(device, batch), Variant::EAGER).expect("setup");
    let mut group = c.benchmark_group("forward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(secs.min(10)));
    group.bench_function(format!("tiny_llama/{device:?}/b{batch}x{SEQ}"), |b| {
        b.iter_custom(|iters| timed(device, iters, || setup.forward()))
    });
    group.finish();
}

/// A measured step: median seconds, peak memory in GiB (CUDA: the allocator's reserved; CPU:
/// the process's peak RSS, which for titan includes everything this bench ran before), and the
/// model's training FLOPs per token (PaLM's count).
#[derive(Debug, Clone, Copy)]
struct Measured {
    step_s: f64,
    peak_gib: f64,
    flops_per_token: f64,
}

type Outcome = Result<Measured, String>;

/// titan's median step over `steps` steps after 2 warm-up steps.
fn titan_step(shape: Shape, steps: usize, variant: Variant) -> Outcome {
    let device = shape.device;
    let run = || -> titan::Result<Measured> {
        titan::shim::empty_cache(device)?;
        titan::shim::reset_peak_memory(device)?;
        let mut setup = Setup::new(shape, variant)?;
        for _ in 0..2 {
            setup.try_step()?;
        }
        let mut times = Vec::with_capacity(steps);
        for _ in 0..steps {
            times.push(try_timed(device, 1, || setup.try_step())?.as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let peak_gib = match titan::shim::device_memory(device)? {
            Some(m) => m.max_reserved as f64 / f64::from(1 << 30),
            None => titan::metrics::max_rss_gib(),
        };
        Ok(Measured {
            step_s: times[times.len() / 2],
            peak_gib,
            flops_per_token: shape.size.config().flops_per_token(shape.seq),
        })
    };
    let result = run().map_err(|e| e.to_string());
    // What titan's allocator cached goes back to the device before PyTorch's process starts.
    let _ = titan::shim::empty_cache(device);
    result
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

/// PyTorch's median step from the baseline script (`mode` eager or compile), with `preload` in
/// `LD_PRELOAD` when given, or why it did not run.
fn pytorch_step(
    shape: Shape,
    steps: usize,
    bf16: bool,
    mode: &str,
    preload: Option<&Path>,
) -> Outcome {
    let device = shape.device;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-baseline");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join(format!("{}.json", shape.size.name()));
    let json = serde_json::to_string(&shape.size.config()).map_err(|e| e.to_string())?;
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
            shape.batch.to_string(),
            shape.seq.to_string(),
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
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = out.status.signal() {
            return Err(format!(
                "python3 was killed by signal {signal}{}",
                if signal == 9 {
                    " (out of memory? the kernel's log says)"
                } else {
                    ""
                }
            ));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default().to_string();
        if last.contains("No module named 'transformers'") {
            return Err(format!(
                "{last} (run `bash benches/baseline/setup.sh` once to install transformers)"
            ));
        }
        return Err(last);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let get = |key: &str| {
        value[key]
            .as_f64()
            .ok_or_else(|| format!("no {key} in {line}"))
    };
    Ok(Measured {
        step_s: get("step_s")?,
        peak_gib: get("peak_gib")?,
        // The same model: titan's count.
        flops_per_token: shape.size.config().flops_per_token(shape.seq),
    })
}

/// CUDA graph variants run where this build can capture them, unless `TITAN_BENCH_GRAPH=0`.
fn graphs_enabled() -> bool {
    titan::shim::has_cuda_graphs() && std::env::var("TITAN_BENCH_GRAPH").map_or(true, |v| v != "0")
}

/// Weights after 3 warm-up steps and `replays` replays of a captured step, against the same
/// number of eager steps from the same start: the largest difference (fp32).
fn graph_vs_eager(device: Device, batch: i64, replays: usize) -> titan::Result<f64> {
    let shape = Shape::tiny(device, batch);
    let mut graphed = Setup::new(
        shape,
        Variant {
            bf16: false,
            graph: true,
        },
    )?;
    let mut eager = Setup::new(shape, Variant::EAGER)?;
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

fn ms(result: &Outcome) -> String {
    match result {
        Ok(m) => format!("{:.2} ms", m.step_s * 1e3),
        Err(_) => "not run".into(),
    }
}

fn ratio(a: &Outcome, b: &Outcome) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) => format!("{:.2}×", a.step_s / b.step_s),
        _ => "–".into(),
    }
}

/// Tokens/s, model TFLOP/s (PaLM's count), MFU against `peak` FLOP/s when known, and peak
/// memory of a measured step.
fn rates(shape: Shape, result: &Outcome, peak: Option<f64>) -> String {
    match result {
        Ok(m) => {
            let tps = shape.tokens() / m.step_s;
            let flops = tps * m.flops_per_token;
            let mfu = peak.map_or_else(|| "n/a".into(), |p| format!("{:.1}%", 100.0 * flops / p));
            format!(
                "{tps:.0} | {:.3} | {mfu} | {:.2} GiB",
                flops / 1e12,
                m.peak_gib
            )
        }
        Err(_) => "– | – | – | –".into(),
    }
}

fn report_failures(results: &[(&str, &Outcome)]) {
    for (what, result) in results {
        if let Err(why) = result {
            eprintln!("baseline: {what} not run: {why}");
        }
    }
}

/// Times titan and PyTorch on the CPU in this run and prints a Markdown table row per size:
/// PyTorch eager as it comes and with the same answer to MKL's vendor check that titan gives
/// (which only changes anything on non-Intel CPUs), `torch.compile`, and titan's step time over
/// each.
fn compare_cpu(sizes: &[Size]) {
    let steps = 5;
    eprintln!(
        "baseline: Cpu, {} threads, median of {steps} timed steps (3 for ~125M and 1B); titan's MKL vendor check off: {}",
        titan::tch::get_num_threads(),
        titan::shim::mkl_vendor_check_off()
    );
    let preload = mkl_vendor_preload();
    let mut rows = Vec::new();
    for &size in sizes {
        let shape = Shape::new(size, Device::Cpu);
        let steps = if size == Size::Tiny { steps } else { 3 };
        let titan = titan_step(shape, steps, Variant::EAGER);
        let torch = pytorch_step(shape, steps, false, "eager", None);
        let torch_fixed = preload
            .clone()
            .and_then(|lib| pytorch_step(shape, steps, false, "eager", Some(&lib)));
        let compiled = pytorch_step(shape, steps, false, "compile", None);
        report_failures(&[
            ("titan", &titan),
            ("PyTorch eager", &torch),
            ("PyTorch eager, MKL vendor check off", &torch_fixed),
            ("torch.compile", &compiled),
        ]);
        rows.push(format!(
            "| {} | {}×{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size.name(),
            shape.batch,
            shape.seq,
            ms(&titan),
            ms(&torch),
            ms(&torch_fixed),
            ms(&compiled),
            ratio(&titan, &torch),
            ratio(&titan, &torch_fixed),
            ratio(&titan, &compiled),
            rates(shape, &titan, None)
        ));
    }
    eprintln!(
        "| model | batch×seq | titan | PyTorch eager | PyTorch eager, MKL vendor check off | torch.compile | titan / PyTorch eager | titan / PyTorch, MKL vendor check off | titan / torch.compile | titan tokens/s | titan TFLOP/s | titan MFU | titan peak memory (RSS) |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        eprintln!("{row}");
    }
}

/// Times titan and PyTorch on CUDA in this run and prints a Markdown table: per size and
/// precision (fp32, bf16), titan eager and as a CUDA graph, PyTorch eager and `torch.compile`,
/// titan's step time over PyTorch's (below 1: titan is faster), then tokens/s, MFU and peak
/// memory of each.
fn compare_cuda(device: Device, sizes: &[Size]) {
    if graphs_enabled() {
        match graph_vs_eager(device, 32, 5) {
            Ok(diff) => eprintln!(
                "baseline: CUDA graph check: weights after 8 steps, graphed vs eager, max |Δ| {diff:.2e}"
            ),
            Err(e) => eprintln!("baseline: CUDA graph check failed: {e}"),
        }
    }
    let peak = titan::metrics::peak_flops(device, None);
    eprintln!(
        "baseline: {device:?}, {} threads, median of 50 timed steps (10 for ~125M and 1B), peak {}",
        titan::tch::get_num_threads(),
        peak.map_or_else(|| "unknown".into(), |p| format!("{:.0} TFLOP/s", p / 1e12))
    );
    let mut times = Vec::new();
    let mut details = Vec::new();
    for &size in sizes {
        let shape = Shape::new(size, device);
        let steps = if size == Size::Tiny { 50 } else { 10 };
        for bf16 in [false, true] {
            let precision = if bf16 { "bf16" } else { "fp32" };
            let titan = |graph| titan_step(shape, steps, Variant { bf16, graph });
            let eager = titan(false);
            let graph = if graphs_enabled() {
                titan(true)
            } else {
                Err("TITAN_BENCH_GRAPH=0".to_string())
            };
            let torch = pytorch_step(shape, steps, bf16, "eager", None);
            let compiled = pytorch_step(shape, steps, bf16, "compile", None);
            report_failures(&[
                ("titan eager", &eager),
                ("titan graph", &graph),
                ("PyTorch eager", &torch),
                ("torch.compile", &compiled),
            ]);
            let best = match (&eager, &graph) {
                (Ok(e), Ok(g)) if g.step_s < e.step_s => Ok(*g),
                (Ok(e), _) => Ok(*e),
                (Err(e), _) => Err(e.clone()),
            };
            times.push(format!(
                "| {} | {}×{} | {precision} | {} | {} | {} | {} | {} | {} | {} |",
                size.name(),
                shape.batch,
                shape.seq,
                ms(&eager),
                ms(&graph),
                ms(&torch),
                ms(&compiled),
                ratio(&eager, &torch),
                ratio(&best, &torch),
                ratio(&best, &compiled)
            ));
            for (what, result) in [
                ("titan eager", &eager),
                ("titan CUDA graph", &graph),
                ("PyTorch eager", &torch),
                ("torch.compile", &compiled),
            ] {
                details.push(format!(
                    "| {} | {}×{} | {precision} | {what} | {} |",
                    size.name(),
                    shape.batch,
                    shape.seq,
                    rates(shape, result, peak)
                ));
            }
        }
    }
    eprintln!(
        "| model | batch×seq | precision | titan eager | titan CUDA graph | PyTorch eager | torch.compile | titan eager / PyTorch eager | best titan / PyTorch eager | best titan / torch.compile |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|---|");
    for row in times {
        eprintln!("{row}");
    }
    eprintln!(
        "| model | batch×seq | precision | run | tokens/s | TFLOP/s | MFU | peak memory (reserved) |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    for row in details {
        eprintln!("{row}");
    }
}

fn train_step(c: &mut Criterion) {
    // TITAN_BENCH_DEVICES=cuda skips the CPU half (on a GPU machine whose time is counted).
    let devices = std::env::var("TITAN_BENCH_DEVICES").unwrap_or_else(|_| "cpu,cuda".into());
    let sizes = Size::chosen();
    if devices.contains("cpu") {
        bench_device(c, Device::Cpu, 8);
        compare_cpu(&sizes);
    }
    if devices.contains("cuda") && titan::tch::Cuda::is_available() {
        bench_device(c, Device::Cuda(0), 32);
        compare_cuda(Device::Cuda(0), &sizes);
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
