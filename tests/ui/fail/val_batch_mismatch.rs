//! The validation dataloader yields batches the model cannot take.
use titan::prelude::*;
use titan::tch::Device;
use titan::data::HfLabels;
use titan::tch::Tensor;

#[experiment]
pub struct Exp {
    #[build(Llama::new(LlamaConfig::tiny(), Device::Cpu)?)]
    model: Llama,
    #[build(PackedLoader::new(&ParallelDims::new(&LocalEnv::single(), Device::Cpu)?, (0..4096).collect(), 64, 2, 0, true)?)]
    train_data: PackedLoader,
    #[build(Pictures)]
    val_data: Pictures,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig::default())?)]
    lr_scheduler: Warmup<AdamW>,
}

/// A batch of pixels.
pub struct PixelBatch {
    pixels: Tensor,
    labels: HfLabels,
}

impl Batch for PixelBatch {
    type Input = Tensor;
    type Labels = HfLabels;
    fn into_parts(self) -> (Tensor, HfLabels) {
        (self.pixels, self.labels)
    }
    fn num_tokens(&self) -> i64 {
        0
    }
    fn to_device(self, _: Device) -> titan::Result<Self> {
        Ok(self)
    }
}

/// Yields pictures.
pub struct Pictures;

impl Dataloader for Pictures {
    type Batch = PixelBatch;
    type State = ();
    fn next_batch(&mut self) -> titan::Result<PixelBatch> {
        let t = Tensor::zeros([1], (titan::tch::Kind::Float, Device::Cpu));
        Ok(PixelBatch { pixels: t.shallow_clone(), labels: HfLabels(t) })
    }
    fn state(&self) {}
    fn load_state(&mut self, _: ()) -> titan::Result<()> {
        Ok(())
    }
    fn epoch(&self) -> u64 {
        0
    }
}

fn main() {}
