//! The `training` section of another type: one error, on the field's type, not one for each
//! place that reads the run's settings.
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[config(LlamaConfig::tiny())]
    training: LlamaConfig,
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

fn main() {}
