//! What must fit what for the loop to run: the batch input the model's input, validation labels
//! the training labels, the scheduler's optimizer the experiment's. Each is a helper trait with
//! a message in words, so `#[experiment]`'s wiring chain reports a mismatch as one sentence at
//! the user's field, and the loop uses the same traits to view one type as the other.

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
