//! The wiring chain `#[experiment]` expands to: one generic step per role, each spanned at the
//! user's field type, so each mismatch is one compile error there. Every step erases what it
//! checked into closures, so a failed step leaves error types behind and later steps stay quiet
//! instead of repeating the error.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use crate::data::{Batch, Dataloader, upload};
use crate::loss::Loss;
use crate::lr::LrScheduler;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::trainer::{Summary, Trainer};
use crate::{Error, Result};

/// The batch input `Self` can be used as the model input `T` (only when they are the same type).
#[diagnostic::on_unimplemented(
    message = "the batch input `{Self}` does not fit the model input `{T}`",
    label = "this dataloader's batches do not fit the model",
    note = "the dataloader's `Batch::Input` must be the model's `Model::Input`; pick a dataloader that yields what the model takes, or a model that takes this batch"
)]
pub trait FitsModelInput<T> {
    /// The input, seen as the model's.
    fn as_model_input(&self) -> &T;
}

impl<T> FitsModelInput<T> for T {
    fn as_model_input(&self) -> &T {
        self
    }
}

/// Validation labels `Self` are the training labels `T` (the one loss scores both).
#[diagnostic::on_unimplemented(
    message = "the validation labels `{Self}` are not the training labels `{T}`",
    label = "this validation dataloader's labels differ from the training dataloader's",
    note = "validation and training batches must share one label convention, since one loss scores both"
)]
pub trait SameLabels<T> {
    /// The labels, seen as the training labels.
    fn as_train_labels(&self) -> &T;
}

impl<T> SameLabels<T> for T {
    fn as_train_labels(&self) -> &T {
        self
    }
}

/// The scheduler's optimizer type `Self` is the experiment's optimizer `T`.
#[diagnostic::on_unimplemented(
    message = "the LR scheduler drives `{Self}`, but the experiment's optimizer is `{T}`",
    label = "this LR scheduler is for another optimizer type",
    note = "build the scheduler over the experiment's optimizer, e.g. `Warmup::new(&optimizer, ...)`"
)]
pub trait SameOptimizer<T> {
    /// The optimizer, seen as the scheduler's.
    fn as_scheduled(this: &mut T) -> &mut Self;
}

impl<T> SameOptimizer<T> for T {
    fn as_scheduled(this: &mut T) -> &mut T {
        this
    }
}

type Forward<'a, I> = Rc<dyn Fn(&I) -> Result<Tensor> + 'a>;
/// The model's forward and backward passes under a loss of its logits.
type ForwardBackward<'a, I> = Rc<dyn Fn(&I, &mut LogitsLoss<'_>) -> Result<(Tensor, Tensor)> + 'a>;
/// Loss sum and count of one batch's logits.
pub type LogitsLoss<'l> = dyn FnMut(&Tensor) -> Result<(Tensor, Tensor)> + 'l;
/// Loss sum and count of logits against labels, passed to a micro-batch step.
pub type LabelsLoss<'l, Lab> = dyn FnMut(&Tensor, &Lab) -> Result<(Tensor, Tensor)> + 'l;
/// The model's training FLOPs per token at a sequence length.
pub(crate) type FlopsFn<'a> = Rc<dyn Fn(i64) -> f64 + 'a>;
type LossFn<'a, Lab> = Rc<ScoreFn<'a, Lab>>;
/// Loss sum and token count of logits against labels.
type ScoreFn<'a, Lab> = dyn Fn(&Tensor, &Lab) -> Result<(Tensor, Tensor)> + 'a;
/// Runs one evaluation: mean loss and tokens counted.
type Validate<'a> = Option<Box<dyn FnMut() -> Result<(f64, f64)> + 'a>>;

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
    fn next(&mut self, loss: &mut LabelsLoss<'_, Lab>) -> Result<Fetched>;
    /// Fetches the next micro-batch into slot `slot`, copying it into the buffers the slot's
    /// first batch created.
    fn stage(&mut self, slot: usize) -> Result<Staged>;
    /// Runs the forward and backward passes of the batch in `slot`: loss sum, count and
    /// sequence length.
    fn run_staged(
        &mut self,
        slot: usize,
        loss: &mut LabelsLoss<'_, Lab>,
    ) -> Result<(Tensor, Tensor, i64)>;
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
struct TrainData<'a, D: Dataloader, I> {
    data: &'a mut D,
    device: Device,
    forward_backward: ForwardBackward<'a, I>,
    slots: Vec<Option<Slot<D::Batch>>>,
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
        loss: &mut LabelsLoss<'_, <D::Batch as Batch>::Labels>,
    ) -> Result<(Tensor, Tensor, i64)> {
        let mut seq_len = 0;
        let (sum, count) = (self.forward_backward)(input.as_model_input(), &mut |logits| {
            seq_len = logits.size().get(1).copied().unwrap_or(0);
            loss(logits, labels)
        })?;
        Ok((sum, count, seq_len))
    }
}

impl<D, I> MicroBatches<<D::Batch as Batch>::Labels> for TrainData<'_, D, I>
where
    D: Dataloader,
    <D::Batch as Batch>::Input: FitsModelInput<I>,
{
    fn next(&mut self, loss: &mut LabelsLoss<'_, <D::Batch as Batch>::Labels>) -> Result<Fetched> {
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
        loss: &mut LabelsLoss<'_, <D::Batch as Batch>::Labels>,
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
}

/// Everything the loop needs, with the component types erased.
pub struct Parts<'a, Lab> {
    pub(crate) device: Device,
    pub(crate) params: Vec<(String, Tensor)>,
    pub(crate) flops_per_token: FlopsFn<'a>,
    pub(crate) data: Box<dyn MicroBatches<Lab> + 'a>,
    pub(crate) loss: LossFn<'a, Lab>,
    pub(crate) validate: Validate<'a>,
    pub(crate) update: Box<dyn Update + 'a>,
}

/// Optimizer and scheduler, erased.
pub(crate) trait Update {
    fn schedule(&mut self) -> f64;
    fn zero_grad(&mut self) -> Result<()>;
    fn step(&mut self) -> Result<()>;
    fn capturable(&self) -> bool;
}

struct OptSched<'a, O, S> {
    optimizer: &'a mut O,
    scheduler: &'a mut S,
}

impl<O, S> Update for OptSched<'_, O, S>
where
    O: Optimizer,
    S: LrScheduler,
    S::Optimizer: SameOptimizer<O>,
{
    fn schedule(&mut self) -> f64 {
        self.scheduler
            .step(<S::Optimizer as SameOptimizer<O>>::as_scheduled(
                self.optimizer,
            ))
    }
    fn zero_grad(&mut self) -> Result<()> {
        self.optimizer.zero_grad()
    }
    fn step(&mut self) -> Result<()> {
        self.optimizer.step()
    }
    fn capturable(&self) -> bool {
        self.optimizer.capturable()
    }
}

/// Step 1: the model.
pub struct WireModel<'a, I> {
    device: Device,
    params: Vec<(String, Tensor)>,
    forward: Forward<'a, I>,
    forward_backward: ForwardBackward<'a, I>,
    flops_per_token: FlopsFn<'a>,
}

/// Starts the chain with the model.
pub fn wire<M: Model>(model: &M) -> WireModel<'_, M::Input> {
    WireModel {
        device: model.device(),
        params: model.parameters().named(),
        forward: Rc::new(move |input| model.forward(input)),
        forward_backward: Rc::new(move |input, loss| model.forward_backward(input, loss)),
        flops_per_token: Rc::new(move |seq_len| model.flops_per_token(seq_len)),
    }
}

/// Step 2: model and training data.
pub struct WireData<'a, I, Lab> {
    model: WireModel<'a, I>,
    data: Box<dyn MicroBatches<Lab> + 'a>,
}

impl<'a, I: 'a> WireModel<'a, I> {
    /// Adds the training dataloader; its batches must fit the model.
    pub fn train_data<D>(self, data: &'a mut D) -> WireData<'a, I, <D::Batch as Batch>::Labels>
    where
        D: Dataloader,
        <D::Batch as Batch>::Input: FitsModelInput<I>,
    {
        let data: Box<dyn MicroBatches<<D::Batch as Batch>::Labels> + 'a> = Box::new(TrainData {
            data,
            device: self.device,
            forward_backward: self.forward_backward.clone(),
            slots: Vec::new(),
        });
        WireData { model: self, data }
    }
}

/// Step 3: with the loss.
pub struct WireLoss<'a, I, Lab> {
    data: WireData<'a, I, Lab>,
    loss: LossFn<'a, Lab>,
    validate: Validate<'a>,
}

impl<'a, I: 'a, Lab: 'a> WireData<'a, I, Lab> {
    /// Adds the loss; it must take the training batches' labels.
    pub fn loss<L: Loss<Lab>>(self, loss: &'a L) -> WireLoss<'a, I, Lab> {
        WireLoss {
            data: self,
            loss: Rc::new(move |logits, labels| loss.loss_sum(logits, labels)),
            validate: None,
        }
    }
}

impl<'a, I: 'a, Lab: 'a> WireLoss<'a, I, Lab> {
    /// Adds a validation dataloader: the first `batches` batches it yields are the fixed
    /// validation set. Its batches must fit the model and carry the training labels' type.
    pub fn val_data<V>(mut self, data: &'a mut V, batches: usize) -> Result<Self>
    where
        V: Dataloader,
        <V::Batch as Batch>::Input: FitsModelInput<I>,
        <V::Batch as Batch>::Labels: SameLabels<Lab>,
    {
        let start = serde_json::to_value(data.state())?;
        let (forward, loss) = (self.data.model.forward.clone(), self.loss.clone());
        let device = self.data.model.device;
        self.validate = Some(Box::new(move || {
            data.load_state(serde_json::from_value(start.clone())?)?;
            evaluate_with(
                data,
                batches,
                device,
                &*forward,
                &|logits, labels: &<V::Batch as Batch>::Labels| {
                    loss(logits, labels.as_train_labels())
                },
            )
        }));
        Ok(self)
    }

    /// Adds the optimizer.
    pub fn optimizer<O: Optimizer>(self, optimizer: &'a mut O) -> WireOpt<'a, Lab, O> {
        WireOpt {
            device: self.data.model.device,
            params: self.data.model.params,
            flops_per_token: self.data.model.flops_per_token,
            data: self.data.data,
            loss: self.loss,
            validate: self.validate,
            optimizer,
        }
    }
}

/// Step 4: with the optimizer.
pub struct WireOpt<'a, Lab, O> {
    device: Device,
    params: Vec<(String, Tensor)>,
    flops_per_token: FlopsFn<'a>,
    data: Box<dyn MicroBatches<Lab> + 'a>,
    loss: LossFn<'a, Lab>,
    validate: Validate<'a>,
    optimizer: &'a mut O,
}

impl<'a, Lab: 'a, O: 'a> WireOpt<'a, Lab, O> {
    /// Adds the LR scheduler; it must drive this optimizer's type.
    pub fn lr_scheduler<S>(self, scheduler: &'a mut S) -> Parts<'a, Lab>
    where
        O: Optimizer,
        S: LrScheduler,
        S::Optimizer: SameOptimizer<O>,
    {
        Parts {
            device: self.device,
            params: self.params,
            flops_per_token: self.flops_per_token,
            data: self.data,
            loss: self.loss,
            validate: self.validate,
            update: Box::new(OptSched {
                optimizer: self.optimizer,
                scheduler,
            }),
        }
    }
}

/// Mean loss per counted token over the next `batches` batches of `data`, and the token count.
/// The core of every evaluation: the wiring chain's and [`crate::trainer::evaluate`].
pub(crate) fn evaluate_with<V, I, Lab>(
    data: &mut V,
    batches: usize,
    device: Device,
    forward: &dyn Fn(&I) -> Result<Tensor>,
    loss: &ScoreFn<'_, Lab>,
) -> Result<(f64, f64)>
where
    V: Dataloader,
    V::Batch: Batch<Labels = Lab>,
    <V::Batch as Batch>::Input: FitsModelInput<I>,
{
    let _guard = tch::no_grad_guard();
    let (mut sum, mut count) = (0.0, 0.0);
    for _ in 0..batches.max(1) {
        let (input, labels) = data.next_batch()?.to_device(device)?.into_parts();
        let logits = forward(input.as_model_input())?;
        let (s, c) = loss(&logits, &labels)?;
        sum += s.f_double_value(&[])?;
        count += c.f_double_value(&[])?;
    }
    Ok((sum / f64::max(count, 1.0), count))
}

impl<Lab> Parts<'_, Lab> {
    /// Runs the training loop with `trainer`'s settings and sinks.
    pub fn fit(self, trainer: &mut Trainer) -> Result<Summary> {
        trainer.run(self)
    }
}
