//! Field types the experiment cannot own or name: a borrowed tokenizer and an `impl Trait`
//! loss; each is one error at the type.

// The expressions of a rejected experiment are not compiled, so some imports go unused.
#![allow(unused_imports)]
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct BorrowedFieldType {
    #[config(TrainingConfig::default())]
    training: TrainingConfig,
    #[build(Box::leak(Box::new(BpeTokenizer::load("tokenizer.json")?)))]
    tokenizer: &BpeTokenizer,
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
        #[build(CausalLmLoss)]
    loss: impl Loss<ShiftedLabels>,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

fn main() {}
