//! An optimizer with momentum buffers that does not say what goes into a checkpoint: a
//! resumed run would start its momentum from zero.
use titan::prelude::*;
use titan::tch::{Device, Tensor};

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(Momentum::new(model.parameters()))]
    optimizer: Momentum,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<Momentum>,
}

/// SGD with momentum.
pub struct Momentum {
    params: Vec<Tensor>,
    buffers: Vec<Tensor>,
    lr: f64,
}

impl Momentum {
    fn new(params: titan::Parameters) -> Self {
        let params: Vec<Tensor> = params.named().into_iter().map(|(_, t)| t).collect();
        let buffers = params.iter().map(Tensor::zeros_like).collect();
        Self { params, buffers, lr: 0.1 }
    }
}

impl Optimizer for Momentum {
    fn zero_grad(&mut self) -> titan::Result<()> {
        for p in &mut self.params {
            p.zero_grad();
        }
        Ok(())
    }
    fn step(&mut self) -> titan::Result<()> {
        let _guard = titan::tch::no_grad_guard();
        for (p, b) in self.params.iter_mut().zip(&mut self.buffers) {
            let _ = b.f_mul_scalar_(0.9)?.f_add_(&p.grad())?;
            let _ = p.f_sub_(&b.f_mul_scalar(self.lr)?)?;
        }
        Ok(())
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn base_lr(&self) -> f64 {
        0.1
    }
}

fn main() {}
