//! Step time of tiny_llama (forward + backward + AdamW) on CPU at batch 8 × 512, and on CUDA at
//! the real batch 32 × 512 when a GPU is there (timings synchronize the device); the forward
//! pass alone; and, in the same run, PyTorch eager doing the same step on the same libtorch
//! (`benches/baseline/torch_step.py`, Hugging Face `LlamaForCausalLM`), with the ratio.
//! The baseline needs `bash benches/baseline/setup.sh` once (transformers into `.bench/site`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use titan::data::{HfLabels, TokenIds};
use titan::tch::{Device, Kind, Tensor};
use titan::{AdamW, AdamWConfig, CausalLmLoss, Llama, LlamaConfig, Loss, Model, Optimizer};

const SEQ: i64 = 512;

/// tiny_llama's model, optimizer and one batch of random ids.
struct Setup {
    model: Llama,
    opt: AdamW,
    input: TokenIds,
    labels: HfLabels,
}

impl Setup {
    fn new(device: Device, batch: i64) -> Self {
        titan::device::seed_everything(0);
        let config = LlamaConfig::tiny();
        let model = Llama::new(config.clone(), device).expect("model");
        let opt = AdamW::new(model.parameters(), AdamWConfig::default()).expect("optimizer");
        let ids = Tensor::randint(config.vocab_size, [batch, SEQ], (Kind::Int64, device));
        Self {
            model,
            opt,
            input: TokenIds(ids.shallow_clone()),
            labels: HfLabels(ids),
        }
    }

    fn step(&mut self) {
        self.opt.zero_grad().expect("zero_grad");
        let logits = self.model.forward(&self.input).expect("forward");
        CausalLmLoss
            .loss(&logits, &self.labels)
            .expect("loss")
            .backward();
        self.opt.step().expect("step");
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
    let mut setup = Setup::new(device, batch);
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function(format!("tiny_llama/{device:?}/b{batch}x{SEQ}"), |b| {
        b.iter_custom(|iters| timed(device, iters, || setup.step()))
    });
    group.finish();
    let mut group = c.benchmark_group("forward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(format!("tiny_llama/{device:?}/b{batch}x{SEQ}"), |b| {
        b.iter_custom(|iters| timed(device, iters, || setup.forward()))
    });
    group.finish();
}

/// Median seconds per titan step over `steps` steps after 2 warm-up steps.
fn titan_step_s(device: Device, batch: i64, steps: usize) -> f64 {
    let mut setup = Setup::new(device, batch);
    for _ in 0..2 {
        setup.step();
    }
    let mut times: Vec<f64> = (0..steps)
        .map(|_| timed(device, 1, || setup.step()).as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// PyTorch eager's median seconds per step, from the baseline script, or why it did not run.
fn pytorch_step_s(device: Device, batch: i64, steps: usize) -> Result<f64, String> {
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
    let out = Command::new("python3")
        .arg(root.join("benches/baseline/torch_step.py"))
        .args([
            config.display().to_string(),
            batch.to_string(),
            SEQ.to_string(),
            steps.to_string(),
            device_arg,
            titan::tch::get_num_threads().to_string(),
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

fn compare(device: Device, batch: i64) {
    let steps = if device.is_cuda() { 50 } else { 5 };
    let titan = titan_step_s(device, batch, steps);
    let label = format!(
        "tiny_llama {device:?} {batch}x{SEQ}, {} threads",
        titan::tch::get_num_threads()
    );
    match pytorch_step_s(device, batch, steps) {
        Ok(torch) => eprintln!(
            "baseline: {label}: titan {:.1} ms/step, PyTorch eager {:.1} ms/step, titan/PyTorch {:.2}x",
            titan * 1e3,
            torch * 1e3,
            titan / torch
        ),
        Err(why) => eprintln!(
            "baseline: {label}: titan {:.1} ms/step; PyTorch eager not run: {why}",
            titan * 1e3
        ),
    }
}

fn train_step(c: &mut Criterion) {
    bench_device(c, Device::Cpu, 8);
    compare(Device::Cpu, 8);
    if titan::tch::Cuda::is_available() {
        bench_device(c, Device::Cuda(0), 32);
        compare(Device::Cuda(0), 32);
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
