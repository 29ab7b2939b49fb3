//! A field named `metrics` is the experiment's metrics sink: a value that is not one (here a
//! list of metric names) is an error on that field, not a field the run ignores.
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
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
    #[build(vec!["loss".to_string(), "grad_norm".to_string()])]
    metrics: Vec<String>,
}

fn main() {}
