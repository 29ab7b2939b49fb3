//! The components the loop drives, with their types erased once the wiring chain has checked
//! that they fit: the model's passes, the training data as micro-batches (fetched and run at
//! once, or staged into fixed buffers for a CUDA graph), the loss, the validator, and the
//! optimizer with its scheduler.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use super::contracts::FitsModelInput;
use super::update::Update;
use crate::batch::{Batch, upload};
use crate::checkpoint::{StateDict, Stateful};
use crate::data::Dataloader;
use crate::loss::{LogitRows, Loss};
use crate::metrics::MetricsSink;
use crate::model::ScoreLogits;
use crate::{Error, Result};

pub(crate) type Forward<'a, I> = Rc<dyn Fn(&I) -> Result<Tensor> + 'a>;
/// The model's forward and backward passes under a loss of its logits.
pub(crate) type ForwardBackward<'a, I> =
    Rc<dyn Fn(&I, &mut LogitsLoss<'_>) -> Result<(Tensor, Tensor)> + 'a>;
/// Loss sum and count of one batch's logits.
pub type LogitsLoss<'l> = dyn ScoreLogits + 'l;
/// Loss sum and count of logits against labels, passed to a micro-batch step.
pub type LabelsLoss<'l, Lab> = dyn ScoreLabels<Lab> + 'l;
/// The model's training FLOPs per token at a sequence length.
pub(crate) type FlopsFn<'a> = Rc<dyn Fn(i64) -> f64 + 'a>;
pub(crate) type LossFn<'a, Lab> = Rc<LabelsLoss<'a, Lab>>;
/// Loss sum and token count of logits against labels.
pub(crate) type ScoreFn<'a, Lab> = dyn Fn(&Tensor, &Lab) -> Result<(Tensor, Tensor)> + 'a;
/// Runs one evaluation over a number of batches: mean loss and tokens counted.
pub(crate) type Validate<'a> = Option<Box<dyn FnMut(usize) -> Result<(f64, f64)> + 'a>>;

/// The experiment's loss with its type erased: a batch's logits against its labels, whole or
/// a slice of rows at a time where the loss can ([`Loss::scores_rows`]).
pub trait ScoreLabels<Lab> {
    /// [`Loss::loss_sum`].
    fn whole(&self, logits: &Tensor, labels: &Lab) -> Result<(Tensor, Tensor)>;
    /// [`Loss::scores_rows`].
    fn scores_rows(&self) -> bool;
    /// [`Loss::loss_sum_rows`].
    fn rows(&self, rows: &LogitRows<'_>, labels: &Lab) -> Result<(Tensor, Tensor)>;
}

impl<L: Loss<Lab> + ?Sized, Lab> ScoreLabels<Lab> for RefCell<&mut L> {
    fn whole(&self, logits: &Tensor, labels: &Lab) -> Result<(Tensor, Tensor)> {
        self.borrow().loss_sum(logits, labels)
    }

    fn scores_rows(&self) -> bool {
        self.borrow().scores_rows()
    }

    fn rows(&self, rows: &LogitRows<'_>, labels: &Lab) -> Result<(Tensor, Tensor)> {
        self.borrow().loss_sum_rows(rows, labels)
    }
}

/// A loss with one batch's labels, as the model's training pass scores that batch's logits;
/// it notes the batch's sequence length.
struct WithLabels<'l, Lab> {
    loss: &'l LabelsLoss<'l, Lab>,
    labels: &'l Lab,
    seq_len: i64,
}

impl<Lab> ScoreLogits for WithLabels<'_, Lab> {
    fn whole(&mut self, logits: &Tensor) -> Result<(Tensor, Tensor)> {
        self.seq_len = logits.size().get(1).copied().unwrap_or(0);
        self.loss.whole(logits, self.labels)
    }

    fn scores_rows(&self) -> bool {
        self.loss.scores_rows()
    }

    fn rows(&mut self, rows: &LogitRows<'_>) -> Result<(Tensor, Tensor)> {
        self.seq_len = rows.seq_len;
        self.loss.rows(rows, self.labels)
    }
}

/// One fetched training micro-batch, after its forward and backward passes.
pub struct Fetched {
    /// Its loss summed over counted tokens (detached; its gradient is already accumulated).
    pub sum: Tensor,
    /// The number of counted tokens.
    pub count: Tensor,
    /// Input tokens in the batch.
    pub tokens: i64,
    /// Time spent waiting for the dataloader.
    pub wait: Duration,
    /// The dataloader's epoch after this batch.
    pub epoch: u64,
    /// Sequence length of the batch.
    pub seq_len: i64,
}

/// One micro-batch fetched into a slot's fixed buffers, not yet run.
#[derive(Debug, Clone, Copy)]
pub struct Staged {
    /// Input tokens in the batch.
    pub tokens: i64,
    /// Time spent waiting for the dataloader.
    pub wait: Duration,
    /// The dataloader's epoch after this batch.
    pub epoch: u64,
    /// Whether the slot still holds its first buffers: false once a batch listed no tensors
    /// ([`Batch::tensors`]) or changed shape and so replaced them, which a captured step cannot
    /// see.
    pub reusable: bool,
}

/// The training data with the model's passes, erased: micro-batches fetched and run at once
/// (eager), or fetched into fixed per-slot buffers and run from there — what a captured CUDA
/// graph replays, since it reads the same memory every time.
pub(crate) trait MicroBatches<Lab> {
    /// Fetches the next micro-batch and runs its forward and backward passes under `loss`.
    fn next(&mut self, loss: &LabelsLoss<'_, Lab>) -> Result<Fetched>;
    /// Fetches the next micro-batch into slot `slot`, copying it into the buffers the slot's
    /// first batch created.
    fn stage(&mut self, slot: usize) -> Result<Staged>;
    /// Runs the forward and backward passes of the batch in `slot`: loss sum, count and
    /// sequence length.
    fn run_staged(
        &mut self,
        slot: usize,
        loss: &LabelsLoss<'_, Lab>,
    ) -> Result<(Tensor, Tensor, i64)>;
    /// The dataloader's position after the batches served so far, for a checkpoint.
    fn state(&self) -> Result<serde_json::Value>;
    /// Moves the dataloader to a position [`MicroBatches::state`] gave.
    fn load_state(&mut self, state: serde_json::Value) -> Result<()>;
    /// Moves the dataloader to the positions of a run on another number of ranks, by rank.
    fn load_resharded(&mut self, states: Vec<serde_json::Value>) -> Result<()>;
    /// The dataloader's completed passes.
    fn epoch(&self) -> u64;
    /// Whether the dataloader resumes at another batch size ([`crate::Dataloader::rebatches`]).
    fn rebatches(&self) -> bool;
    /// Whether the dataloader resumes at another row length ([`crate::Dataloader::reshapes`]).
    fn reshapes(&self) -> bool;
    /// Whether the dataloader checks its files on restore ([`crate::Dataloader::checks_files`]).
    fn checks_files(&self) -> bool;
    /// The dataloader's type, for errors.
    fn type_name(&self) -> &'static str;
}

/// A staged batch: its parts and handles to every tensor it holds (sharing their storage).
struct Slot<B: Batch> {
    /// False once a batch had to replace the buffers (or listed no tensors).
    reusable: bool,
    tensors: Vec<Tensor>,
    input: B::Input,
    labels: B::Labels,
}

/// [`MicroBatches`] over a dataloader and the model's forward and backward passes.
pub(crate) struct TrainData<'a, D: Dataloader, I> {
    data: &'a mut D,
    device: Device,
    forward_backward: ForwardBackward<'a, I>,
    slots: Vec<Option<Slot<D::Batch>>>,
}

impl<'a, D: Dataloader, I> TrainData<'a, D, I> {
    /// `data`'s batches, run through the model's `forward_backward` on `device`.
    pub(crate) fn new(
        data: &'a mut D,
        device: Device,
        forward_backward: ForwardBackward<'a, I>,
    ) -> Self {
        Self {
            data,
            device,
            forward_backward,
            slots: Vec::new(),
        }
    }
}

impl<D, I> TrainData<'_, D, I>
where
    D: Dataloader,
    <D::Batch as Batch>::Input: FitsModelInput<I>,
{
    fn run(
        &self,
        input: &<D::Batch as Batch>::Input,
        labels: &<D::Batch as Batch>::Labels,
        loss: &LabelsLoss<'_, <D::Batch as Batch>::Labels>,
    ) -> Result<(Tensor, Tensor, i64)> {
        let mut scored = WithLabels {
            loss,
            labels,
            seq_len: 0,
        };
        let (sum, count) = (self.forward_backward)(input.as_model_input(), &mut scored)?;
        Ok((sum, count, scored.seq_len))
    }
}

impl<D, I> MicroBatches<<D::Batch as Batch>::Labels> for TrainData<'_, D, I>
where
    D: Dataloader,
    <D::Batch as Batch>::Input: FitsModelInput<I>,
{
    fn next(&mut self, loss: &LabelsLoss<'_, <D::Batch as Batch>::Labels>) -> Result<Fetched> {
        let started = Instant::now();
        let batch = self.data.next_batch()?.to_device(self.device)?;
        let wait = started.elapsed();
        let tokens = batch.num_tokens();
        let (input, labels) = batch.into_parts();
        let (sum, count, seq_len) = self.run(&input, &labels, loss)?;
        Ok(Fetched {
            sum,
            count,
            tokens,
            wait,
            epoch: self.data.epoch(),
            seq_len,
        })
    }

    fn stage(&mut self, slot: usize) -> Result<Staged> {
        let started = Instant::now();
        let batch = self.data.next_batch()?;
        let wait = started.elapsed();
        let tokens = batch.num_tokens();
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        let new = batch.tensors();
        // The batch fits the slot when it lists as many tensors, of the same shapes and dtypes.
        let fits = self.slots[slot].as_ref().is_some_and(|held| {
            !held.tensors.is_empty()
                && held.tensors.len() == new.len()
                && held
                    .tensors
                    .iter()
                    .zip(&new)
                    .all(|(a, b)| a.size() == b.size() && a.kind() == b.kind())
        });
        if let (true, Some(held)) = (fits, &self.slots[slot]) {
            let _guard = tch::no_grad_guard();
            for (dst, src) in held.tensors.iter().zip(new) {
                dst.shallow_clone().f_copy_(&upload(src, self.device)?)?;
            }
        } else {
            // A first batch, or one that does not fit: it becomes the slot's buffers, and a
            // step captured over the old ones cannot see it.
            drop(new);
            let batch = batch.to_device(self.device)?;
            let tensors: Vec<Tensor> = batch.tensors().iter().map(|t| t.shallow_clone()).collect();
            let (input, labels) = batch.into_parts();
            let first = self.slots[slot].is_none();
            self.slots[slot] = Some(Slot {
                reusable: first && !tensors.is_empty(),
                tensors,
                input,
                labels,
            });
        }
        let reusable = self.slots[slot].as_ref().is_some_and(|held| held.reusable);
        Ok(Staged {
            tokens,
            wait,
            epoch: self.data.epoch(),
            reusable,
        })
    }

    fn run_staged(
        &mut self,
        slot: usize,
        loss: &LabelsLoss<'_, <D::Batch as Batch>::Labels>,
    ) -> Result<(Tensor, Tensor, i64)> {
        let held = self
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                Error::Training(format!(
                    "micro-batch slot {slot} was run before any batch was staged"
                ))
            })?;
        self.run(&held.input, &held.labels, loss)
    }

    fn state(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self.data.state())?)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.data.load_state(serde_json::from_value(state)?)
    }

    fn load_resharded(&mut self, states: Vec<serde_json::Value>) -> Result<()> {
        let states = states
            .into_iter()
            .map(serde_json::from_value)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.data.load_resharded(states)
    }

    fn epoch(&self) -> u64 {
        self.data.epoch()
    }

    fn rebatches(&self) -> bool {
        self.data.rebatches()
    }

    fn reshapes(&self) -> bool {
        self.data.reshapes()
    }

    fn checks_files(&self) -> bool {
        self.data.checks_files()
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<D>()
    }
}

/// A role's [`Stateful`] state, erased: the role's name in checkpoints, and its state out
/// and in.
pub(crate) trait RoleState {
    /// The role (`model`, `loss`, `optimizer`, `lr_scheduler`).
    fn role(&self) -> &'static str;
    /// Its state now.
    fn save(&self) -> Result<StateDict>;
    /// Restores a saved state.
    fn load(&mut self, state: StateDict) -> Result<()>;
}

/// A component the loop shares between its passes and its checkpoint state.
pub(crate) struct Shared<'a, T> {
    role: &'static str,
    component: Rc<RefCell<&'a mut T>>,
}

impl<'a, T> Shared<'a, T> {
    /// `component`'s state under `role`.
    pub(crate) fn new(role: &'static str, component: Rc<RefCell<&'a mut T>>) -> Self {
        Self { role, component }
    }
}

impl<T: Stateful> RoleState for Shared<'_, T> {
    fn role(&self) -> &'static str {
        self.role
    }
    fn save(&self) -> Result<StateDict> {
        self.component.borrow().state_dict()
    }
    fn load(&mut self, state: StateDict) -> Result<()> {
        self.component.borrow_mut().load_state_dict(state)
    }
}

/// Everything the loop needs, with the component types erased.
pub struct Parts<'a, Lab> {
    pub(crate) device: Device,
    pub(crate) params: Vec<(String, Tensor)>,
    pub(crate) flops_per_token: FlopsFn<'a>,
    /// Every role's checkpoint state besides the weights and the training data's position.
    pub(crate) states: Vec<Box<dyn RoleState + 'a>>,
    pub(crate) data: Box<dyn MicroBatches<Lab> + 'a>,
    pub(crate) loss: LossFn<'a, Lab>,
    pub(crate) validate: Validate<'a>,
    pub(crate) update: Box<dyn Update + 'a>,
    /// The experiment's own metrics sinks (its `metrics` role), beside the trainer's.
    pub(crate) sinks: Vec<&'a mut (dyn MetricsSink + 'a)>,
}
