//! A `#[config]` section whose type is not a serde struct: one error, on the field's type,
//! saying what to derive (not one raw error per missing trait, inside titan).
use titan::prelude::*;
use titan::tch::Device;

#[experiment]
pub struct Exp {
    #[config(ModelSize { layers: 2 })]
    size: ModelSize,
    #[build(Llama::new(LlamaConfig { num_hidden_layers: size.layers, ..LlamaConfig::tiny() }, Device::Cpu)?)]
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

/// How big the model is: a settings section without `Clone` or serde.
pub struct ModelSize {
    pub layers: i64,
}

fn main() {}
