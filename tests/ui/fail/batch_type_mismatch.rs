//! The dataloader's batches carry token ids, the model takes something else.
use titan::prelude::*;
use titan::tch::Device;
use titan::tch::{nn, Tensor};

#[experiment]
pub struct Exp {
    #[build(Embeddings::new())]
    model: Embeddings,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

/// Image-like features, not token ids.
pub struct Features(pub Tensor);

/// A model over `Features`.
pub struct Embeddings {
    vs: nn::VarStore,
}

impl Embeddings {
    fn new() -> Self {
        Self { vs: nn::VarStore::new(Device::Cpu) }
    }
}

impl Stateless for Embeddings {}

impl Model for Embeddings {
    type Input = Features;
    fn forward(&self, input: &Features) -> titan::Result<Tensor> {
        Ok(input.0.shallow_clone())
    }
    fn parameters(&self) -> titan::Parameters {
        titan::Parameters::new(&self.vs)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn vocab_size(&self) -> i64 {
        0
    }
    fn max_seq_len(&self) -> i64 {
        0
    }
}

fn main() {}
