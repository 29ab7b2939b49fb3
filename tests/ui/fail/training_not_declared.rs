//! An expression reads `training.seq_len`, but the experiment has no `training` section: one
//! error at the use, saying how to add it (not rustc's bare "cannot find value").
// The expressions of a rejected experiment are not compiled, so some imports go unused.
#![allow(unused_imports)]
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), training.seq_len, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

fn main() {}
