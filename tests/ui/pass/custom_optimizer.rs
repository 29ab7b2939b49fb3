//! An optimizer defined right here, with no registration anywhere, trains a tiny Llama.

use titan::cli::TrainArgs;
use titan::prelude::*;
use titan::tch::{Device, Tensor};

/// Plain stochastic gradient descent, written in the experiment file.
pub struct Sgd {
    params: Vec<Tensor>,
    lr: f64,
}

impl Sgd {
    fn new(params: titan::Parameters, lr: f64) -> Self {
        let params = params.named().into_iter().map(|(_, t)| t).collect();
        Self { params, lr }
    }
}

/// Plain SGD keeps nothing between steps: the scheduler sets its rate every step.
impl Stateless for Sgd {}

impl Optimizer for Sgd {
    fn zero_grad(&mut self) -> titan::Result<()> {
        for p in &mut self.params {
            p.zero_grad();
        }
        Ok(())
    }
    fn step(&mut self) -> titan::Result<()> {
        let _guard = titan::tch::no_grad_guard();
        for p in &mut self.params {
            let update = p.grad().f_mul_scalar(self.lr)?;
            let _ = p.f_sub_(&update)?;
        }
        Ok(())
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn base_lr(&self) -> f64 {
        0.5
    }
}

/// A tiny Llama on a repeating token pattern, trained with `Sgd`.
#[experiment]
pub struct SgdExperiment {
    #[config(TrainingConfig { steps: 3, batch_size: 2, seq_len: 32, samples: 0, device: "cpu".into(), ..TrainingConfig::default() })]
    training: TrainingConfig,
    #[build(Llama::new(LlamaConfig {
        vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
        num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
        ..LlamaConfig::tiny()
    }, Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..2048).map(|i| i % 64).collect(), training.seq_len, training.batch_size, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(Sgd::new(model.parameters(), 0.5))]
    optimizer: Sgd,
    #[build(Warmup::new(&optimizer, WarmupConfig { warmup_steps: 1, total_steps: 3, ..WarmupConfig::default() })?)]
    lr_scheduler: Warmup<Sgd>,
}

pub fn main() {
    let dir = std::env::temp_dir().join(format!("titan-ui-sgd-{}", std::process::id()));
    let dir_flag = dir.display().to_string();
    let args = TrainArgs::try_parse_from(["sgd", "--output-dir", &dir_flag]).expect("flags");
    titan::experiment::run::<SgdExperiment>(args).expect("trains with the custom optimizer");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    assert!(metrics.contains("\"step\":3"), "{metrics}");
}
