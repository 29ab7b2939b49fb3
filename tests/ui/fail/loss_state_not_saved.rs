//! A loss that keeps state between steps (a running count for a curriculum) but does not say
//! what goes into a checkpoint: a resumed run would restart its count from zero.
use std::cell::Cell;

use titan::prelude::*;
use titan::tch::{Device, Tensor};

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(Curriculum { seen: Cell::new(0) })]
    loss: Curriculum,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

/// Cross-entropy, scaled up as batches go by.
pub struct Curriculum {
    seen: Cell<u64>,
}

impl Loss<HfLabels> for Curriculum {
    fn loss_sum(&self, logits: &Tensor, labels: &HfLabels) -> titan::Result<(Tensor, Tensor)> {
        self.seen.set(self.seen.get() + 1);
        let (sum, count) = CausalLmLoss.loss_sum(logits, labels)?;
        Ok((sum * (self.seen.get().min(100) as f64 / 100.0), count))
    }
}

fn main() {}
