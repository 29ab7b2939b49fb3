//! The optimizer's factory takes a plain list of tensors, not the model's parameters: the error is on the expression.
use titan::prelude::*;
use titan::tch::Device;
use titan::tch::Tensor;

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(Sgd::new(model.parameters(), 0.1))]
    optimizer: Sgd,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<Sgd>,
}

/// Plain SGD over a list of tensors.
pub struct Sgd {
    params: Vec<Tensor>,
    lr: f64,
}

impl Sgd {
    fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Self { params, lr }
    }
}

impl Stateless for Sgd {}

impl Optimizer for Sgd {
    fn zero_grad(&mut self) -> titan::Result<()> {
        Ok(())
    }
    fn step(&mut self) -> titan::Result<()> {
        let _ = (&self.params, self.lr);
        Ok(())
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn base_lr(&self) -> f64 {
        self.lr
    }
}

fn main() {}
