//! The vocabulary data, models and losses share: token ids, both label conventions, the two
//! batch types and `IGNORE_INDEX`. The label convention is a type, so a loss for the other
//! convention does not compile against a batch. Data, model and loss import this module, never
//! each other.

use tch::{Device, Tensor};

use crate::Result;

/// Token ids (b, t), int64: the input of a causal language model.
#[derive(Debug)]
pub struct TokenIds(pub Tensor);

/// Hugging Face labels (b, t): the same positions as the input, unshifted; the loss shifts them.
/// Positions to ignore hold −100.
#[derive(Debug)]
pub struct HfLabels(pub Tensor);

/// Titan (torchtitan) labels (b, t): already shifted, position `i` holds the token that follows
/// input position `i`; the loss does not shift them. Positions to ignore hold −100.
#[derive(Debug)]
pub struct ShiftedLabels(pub Tensor);

/// The value of ignored label positions (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// One batch: an input for the model and labels for the loss.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch",
    note = "a batch implements `titan::Batch`: it splits into the model's input and the loss's labels"
)]
pub trait Batch {
    /// What the model consumes.
    type Input;
    /// What the loss compares logits against.
    type Labels;
    /// Splits the batch into the model's input and the loss's labels.
    fn into_parts(self) -> (Self::Input, Self::Labels);
    /// Number of input tokens, for throughput.
    fn num_tokens(&self) -> i64;
    /// Moves every tensor to `device`.
    fn to_device(self, device: Device) -> Result<Self>
    where
        Self: Sized;
    /// Every tensor of the batch, in a fixed order, so the next batch can be copied into this
    /// one's buffers (what a replayed CUDA graph reads): they must be the very tensors
    /// [`Batch::into_parts`] hands out (shared storage), and [`Batch::to_device`] must only move
    /// them. The default, none, makes the trainer run such batches eagerly.
    fn tensors(&self) -> Vec<&Tensor> {
        Vec::new()
    }
}

/// `src` on `device` without making the host wait for the device: on CUDA through pinned
/// memory and an asynchronous copy (libtorch's pinned-memory cache keeps the block until the
/// copy has run), so the loop prepares the next batch while the previous step still runs;
/// elsewhere an ordinary copy.
pub fn upload(src: &Tensor, device: Device) -> Result<Tensor> {
    if src.device() == device {
        return Ok(src.shallow_clone());
    }
    if device.is_cuda() && src.device() == Device::Cpu {
        // `_pin_memory` is what `pin_memory(device)` calls, without its deprecation warning.
        let pinned = src.f_internal_pin_memory(device)?;
        return Ok(pinned.f_to_device_(device, pinned.kind(), true, false)?);
    }
    Ok(src.f_to(device)?)
}

/// A causal-LM batch in Hugging Face's convention (`input_ids`, unshifted `labels`).
#[derive(Debug)]
pub struct HfBatch {
    /// Token ids (b, t).
    pub input_ids: TokenIds,
    /// Labels (b, t), unshifted, −100 where ignored.
    pub labels: HfLabels,
}

/// A batch in the Titan (torchtitan) convention: inputs and labels already shifted by one.
#[derive(Debug)]
pub struct TitanBatch {
    /// Token ids (b, t).
    pub inputs: TokenIds,
    /// Labels (b, t): position `i` holds the token after input position `i`, −100 where ignored.
    pub labels: ShiftedLabels,
}

/// One `Batch` impl for both conventions: they differ only in the labels' type and the input
/// field's name.
macro_rules! token_batch {
    ($batch:ident, $input:ident, $labels:ident) => {
        impl Batch for $batch {
            type Input = TokenIds;
            type Labels = $labels;

            fn into_parts(self) -> (TokenIds, $labels) {
                (self.$input, self.labels)
            }

            fn num_tokens(&self) -> i64 {
                self.$input.0.numel() as i64
            }

            fn to_device(self, device: Device) -> Result<Self> {
                Ok(Self {
                    $input: TokenIds(self.$input.0.f_to(device)?),
                    labels: $labels(self.labels.0.f_to(device)?),
                })
            }

            fn tensors(&self) -> Vec<&Tensor> {
                vec![&self.$input.0, &self.labels.0]
            }
        }
    };
}

token_batch!(HfBatch, input_ids, HfLabels);
token_batch!(TitanBatch, inputs, ShiftedLabels);

impl AsRef<Tensor> for TokenIds {
    fn as_ref(&self) -> &Tensor {
        &self.0
    }
}

impl AsRef<Tensor> for HfLabels {
    fn as_ref(&self) -> &Tensor {
        &self.0
    }
}

impl AsRef<Tensor> for ShiftedLabels {
    fn as_ref(&self) -> &Tensor {
        &self.0
    }
}
