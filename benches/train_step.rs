//! Step time of tiny_llama (forward + backward + AdamW) on CPU at batch 8 × 512, and on CUDA at
//! the real batch 32 × 512 when a GPU is there. CUDA timings synchronize the device.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use titan::data::{HfLabels, TokenIds};
use titan::tch::{Device, Kind, Tensor};
use titan::{AdamW, AdamWConfig, CausalLmLoss, Llama, LlamaConfig, Loss, Model, Optimizer};

fn bench_device(c: &mut Criterion, device: Device, batch: i64) {
    titan::device::seed_everything(0);
    let config = LlamaConfig::tiny();
    let model = Llama::new(config.clone(), device).expect("model");
    let mut opt = AdamW::new(model.parameters(), AdamWConfig::default()).expect("optimizer");
    let ids = Tensor::randint(config.vocab_size, [batch, 512], (Kind::Int64, device));
    let input = TokenIds(ids.shallow_clone());
    let labels = HfLabels(ids);
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function(format!("tiny_llama/{device:?}/b{batch}x512"), |b| {
        b.iter_custom(|iters| {
            titan::device::synchronize(device);
            let start = Instant::now();
            for _ in 0..iters {
                opt.zero_grad().expect("zero_grad");
                let logits = model.forward(&input).expect("forward");
                let loss = CausalLmLoss.loss(&logits, &labels).expect("loss");
                loss.backward();
                opt.step().expect("step");
            }
            titan::device::synchronize(device);
            start.elapsed()
        })
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    bench_device(c, Device::Cpu, 8);
    if titan::tch::Cuda::is_available() {
        bench_device(c, Device::Cuda(0), 32);
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
