//! A `dist` field that is not a distributed environment: the error is at its type and names
//! the trait and the two environments titan has.
// The expressions of a rejected experiment are not compiled, so some imports go unused.
#![allow(unused_imports)]
use titan::prelude::*;
use titan::tch::Device;

/// The world size as a number: nothing the trainer could reduce gradients through.
pub struct WorldSize(pub usize);

#[experiment]
pub struct Exp {
    #[build(WorldSize(2))]
    dist: WorldSize,
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
