//! A dataloader built from the distributed environment itself instead of the `ParallelDims`
//! derived from it: the compiler says what a dataloader needs.
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[build(LocalEnv::from_env()?)]
    dist: LocalEnv,
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&dist, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

fn main() {}
