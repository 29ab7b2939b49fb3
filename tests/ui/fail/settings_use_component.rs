//! A settings section that uses a component: one error, not a second one for the cycle that
//! the component's use of the section closes.
// The expressions of a rejected experiment are not compiled, so some imports go unused.
#![allow(unused_imports)]
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[config(LlamaConfig { vocab_size: tokenizer.vocab_size() as i64, ..LlamaConfig::tiny() })]
    llama: LlamaConfig,
    #[build(BpeTokenizer::from_file(std::path::Path::new("tokenizer.json"), llama.vocab_size as usize)?)]
    tokenizer: BpeTokenizer,
    #[build(Llama::new(llama.clone(), Device::Cpu)?)]
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
