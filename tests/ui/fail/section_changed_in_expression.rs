//! A field's expression that changes a settings section: each expression has its own copy, so
//! the change would be lost; it is a compile error at the user's line.

// The expressions of a rejected experiment are not compiled, so some imports go unused.
#![allow(unused_imports)]
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct SectionChanged {
    #[config(TrainingConfig::default())]
    training: TrainingConfig,
    #[config(LlamaConfig::tiny())]
    llama: LlamaConfig,
    #[build({ llama.num_hidden_layers = 2; Llama::new(llama, Device::Cpu)? })]
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
