//! The wiring chain `#[experiment]` expands to: one generic step per role, each spanned at the
//! user's field type, so each mismatch is one compile error there. Every step erases what it
//! checked into the trainer's [`Parts`], so a failed step leaves error types behind and later
//! steps stay quiet instead of repeating the error.

use std::cell::RefCell;
use std::rc::Rc;

use tch::{Device, Tensor};

use crate::Result;
use crate::batch::Batch;
use crate::checkpoint::Stateful;
use crate::data::Dataloader;
use crate::loss::Loss;
use crate::lr::LrScheduler;
use crate::metrics::MetricsSink;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::trainer::parts::{
    FlopsFn, Forward, ForwardBackward, LossFn, MicroBatches, RoleState, Shared, TrainData, Validate,
};
use crate::trainer::update::OptSched;
use crate::trainer::{FitsModelInput, Parts, SameLabels, SameOptimizer, evaluate_with};

/// Step 1: the model.
pub struct WireModel<'a, I> {
    device: Device,
    params: Vec<(String, Tensor)>,
    forward: Forward<'a, I>,
    forward_backward: ForwardBackward<'a, I>,
    flops_per_token: FlopsFn<'a>,
    states: Vec<Box<dyn RoleState + 'a>>,
}

/// Starts the chain with the model; what it keeps besides its weights is checkpointed too.
pub fn wire<M: Model + Stateful>(model: &mut M) -> WireModel<'_, M::Input> {
    let (device, params) = (model.device(), model.parameters().named());
    let model = Rc::new(RefCell::new(model));
    let (m1, m2, m3) = (model.clone(), model.clone(), model.clone());
    WireModel {
        device,
        params,
        forward: Rc::new(move |input| m1.borrow().forward(input)),
        forward_backward: Rc::new(move |input, loss| m2.borrow().forward_backward(input, loss)),
        flops_per_token: Rc::new(move |seq_len| m3.borrow().flops_per_token(seq_len)),
        states: vec![Box::new(Shared::new("model", model))],
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
        let data: Box<dyn MicroBatches<<D::Batch as Batch>::Labels> + 'a> = Box::new(
            TrainData::new(data, self.device, self.forward_backward.clone()),
        );
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
    /// Adds the loss; it must take the training batches' labels, and say what it keeps
    /// between steps.
    pub fn loss<L: Loss<Lab> + Stateful>(mut self, loss: &'a mut L) -> WireLoss<'a, I, Lab> {
        let loss = Rc::new(RefCell::new(loss));
        let scores: LossFn<'a, Lab> = loss.clone();
        self.model.states.push(Box::new(Shared::new("loss", loss)));
        WireLoss {
            data: self,
            loss: scores,
            validate: None,
        }
    }
}

impl<'a, I: 'a, Lab: 'a> WireLoss<'a, I, Lab> {
    /// Adds a validation dataloader: the batches it yields first are the fixed validation set
    /// (the trainer scores `training.eval_batches` of them). Its first batch is read here, so
    /// validation data with no documents is an error before step 1. Its batches must fit the model and
    /// carry the training labels' type.
    pub fn val_data<V>(mut self, data: &'a mut V) -> Result<Self>
    where
        V: Dataloader,
        <V::Batch as Batch>::Input: FitsModelInput<I>,
        <V::Batch as Batch>::Labels: SameLabels<Lab>,
    {
        let start = serde_json::to_value(data.state())?;
        // The first validation batch is read now, so a split with no documents (for this rank)
        // stops the run before step 1, not at its first evaluation.
        data.next_batch().map_err(|e| {
            crate::Error::Data(format!(
                "the validation data could not give its first batch (read before step 1): {e}"
            ))
        })?;
        data.load_state(serde_json::from_value(start.clone())?)?;
        let start_epoch = data.epoch();
        let (forward, loss) = (self.data.model.forward.clone(), self.loss.clone());
        let device = self.data.model.device;
        let mut warned = false;
        self.validate = Some(Box::new(move |batches| {
            data.load_state(serde_json::from_value(start.clone())?)?;
            let result = evaluate_with(
                data,
                batches,
                device,
                &*forward,
                &|logits, labels: &<V::Batch as Batch>::Labels| {
                    loss.whole(logits, labels.as_train_labels())
                },
            );
            // Fewer validation batches than an evaluation reads: it wrapped, and its first
            // documents count twice in the loss.
            if result.is_ok() && data.epoch() != start_epoch && !warned {
                warned = true;
                tracing::warn!(
                    "the validation data ran out within one evaluation of {batches} batches \
                     (training.eval_batches) and started over: some of its documents count more \
                     than once in the validation loss; lower training.eval_batches or give more \
                     validation data"
                );
            }
            result
        }));
        Ok(self)
    }

    /// Adds the optimizer.
    pub fn optimizer<O: Optimizer + Stateful>(self, optimizer: &'a mut O) -> WireOpt<'a, Lab, O> {
        let optimizer = Rc::new(RefCell::new(optimizer));
        let mut states = self.data.model.states;
        states.push(Box::new(Shared::new("optimizer", optimizer.clone())));
        WireOpt {
            device: self.data.model.device,
            params: self.data.model.params,
            flops_per_token: self.data.model.flops_per_token,
            states,
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
    states: Vec<Box<dyn RoleState + 'a>>,
    data: Box<dyn MicroBatches<Lab> + 'a>,
    loss: LossFn<'a, Lab>,
    validate: Validate<'a>,
    optimizer: Rc<RefCell<&'a mut O>>,
}

impl<'a, Lab: 'a, O: 'a> WireOpt<'a, Lab, O> {
    /// Adds the LR scheduler; it must drive this optimizer's type.
    pub fn lr_scheduler<S>(self, scheduler: &'a mut S) -> Parts<'a, Lab>
    where
        O: Optimizer,
        S: LrScheduler + Stateful,
        S::Optimizer: SameOptimizer<O>,
    {
        let scheduler = Rc::new(RefCell::new(scheduler));
        let mut states = self.states;
        states.push(Box::new(Shared::new("lr_scheduler", scheduler.clone())));
        Parts {
            device: self.device,
            params: self.params,
            flops_per_token: self.flops_per_token,
            states,
            data: self.data,
            loss: self.loss,
            validate: self.validate,
            update: Box::new(OptSched {
                optimizer: self.optimizer,
                scheduler,
            }),
            sinks: Vec::new(),
        }
    }
}

impl<'a, Lab> Parts<'a, Lab> {
    /// Adds the experiment's metrics sink (its `metrics` role): it receives every step and
    /// evaluation record on rank 0, beside `metrics.jsonl` and TensorBoard.
    pub fn metrics<S: MetricsSink + 'a>(mut self, sink: &'a mut S) -> Self {
        self.sinks.push(sink);
        self
    }
}
