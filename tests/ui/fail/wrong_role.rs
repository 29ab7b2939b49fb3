//! A tokenizer where the training dataloader goes: the message says what a dataloader is.
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(BpeTokenizer::from_file(std::path::Path::new("tokenizer.json"), 512)?)]
    train_data: BpeTokenizer,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

fn main() {}
