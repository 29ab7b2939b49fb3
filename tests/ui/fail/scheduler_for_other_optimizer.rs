//! The LR scheduler was built for another optimizer type.
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Frozen)]
    other: Frozen,
    #[build(Warmup::new(&other, WarmupConfig::default())?)]
    lr_scheduler: Warmup<Frozen>,
}

/// An optimizer that never moves anything.
pub struct Frozen;

impl Optimizer for Frozen {
    fn zero_grad(&mut self) -> titan::Result<()> {
        Ok(())
    }
    fn step(&mut self) -> titan::Result<()> {
        Ok(())
    }
    fn set_lr(&mut self, _: f64) {}
    fn base_lr(&self) -> f64 {
        0.0
    }
}

fn main() {}
