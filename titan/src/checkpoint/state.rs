//! What a component keeps from one step to the next, in and out of a checkpoint. Every role the
//! loop changes (model, loss, optimizer, LR scheduler) must say it: [`Stateful`] with its state,
//! or [`Stateless`] once. The wiring chain asks for it at the user's field, so a component whose
//! state would be left out of checkpoints does not compile. Dataloaders say it through
//! `Dataloader::State`; the tokenizer and the distributed environment are only read.

use tch::Tensor;

use crate::{Error, Result};

/// A component's state: named tensors (written as safetensors) and a JSON value for the rest.
#[derive(Debug, Default)]
pub struct StateDict {
    /// Named tensors (moments, buffers, counters), on any device; the checkpointer copies them
    /// to the host.
    pub tensors: Vec<(String, Tensor)>,
    /// Everything else (counters, positions); `null` when there is none.
    pub value: serde_json::Value,
}

impl StateDict {
    /// A state of tensors alone.
    pub fn of_tensors(tensors: Vec<(String, Tensor)>) -> Self {
        Self {
            tensors,
            value: serde_json::Value::Null,
        }
    }

    /// A state of one serializable value alone.
    pub fn of_value(value: &impl serde::Serialize) -> Result<Self> {
        Ok(Self {
            tensors: Vec::new(),
            value: serde_json::to_value(value)?,
        })
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty() && self.value.is_null()
    }

    /// Its value read back as `T`; `owner` names the component for the error.
    pub fn value_as<T: serde::de::DeserializeOwned>(&self, owner: &str) -> Result<T> {
        serde_json::from_value(self.value.clone()).map_err(|e| {
            Error::Checkpoint(format!(
                "the saved state of {owner} is not what it keeps: {e} (saved: {})",
                self.value
            ))
        })
    }
}

/// A component with state that lives from one step to the next, saved in every checkpoint and
/// restored on resume.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say what it keeps in a checkpoint",
    label = "this component's state would be left out of checkpoints",
    note = "implement `titan::Stateful` for `{Self}` (`state_dict` and `load_state_dict`), or, if it keeps nothing from one step to the next, say so once: `impl titan::Stateless for {Self} {{}}`"
)]
pub trait Stateful {
    /// Its state now. Tensors may share storage with the component's own: the checkpointer
    /// copies them before the next step.
    fn state_dict(&self) -> Result<StateDict>;
    /// Returns to a state [`Stateful::state_dict`] gave; checks that it fits (names, shapes)
    /// before changing anything.
    fn load_state_dict(&mut self, state: StateDict) -> Result<()>;
}

/// A component that keeps nothing from one step to the next (a model's weights count as its
/// parameters, not as this state): its checkpoint state is empty.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say what it keeps in a checkpoint",
    label = "this component's state would be left out of checkpoints",
    note = "implement `titan::Stateful` for `{Self}` (`state_dict` and `load_state_dict`), or, if it keeps nothing from one step to the next, say so once: `impl titan::Stateless for {Self} {{}}`"
)]
pub trait Stateless {}

// The error for a component with neither names `Stateful`, the trait it needs.
#[diagnostic::do_not_recommend]
impl<T: Stateless> Stateful for T {
    fn state_dict(&self) -> Result<StateDict> {
        Ok(StateDict::default())
    }

    fn load_state_dict(&mut self, state: StateDict) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
        Err(Error::Checkpoint(format!(
            "the checkpoint holds state for `{}` (tensors {names:?}, value {}), which keeps none",
            std::any::type_name::<T>(),
            state.value
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;
    impl Stateless for Plain {}

    #[test]
    fn a_stateless_component_saves_nothing_and_refuses_a_state() {
        let mut plain = Plain;
        assert!(plain.state_dict().expect("state").is_empty());
        plain
            .load_state_dict(StateDict::default())
            .expect("an empty state fits");
        let err = plain
            .load_state_dict(StateDict::of_value(&3u64).expect("value"))
            .expect_err("a state it cannot hold");
        assert!(err.to_string().contains("Plain"), "{err}");
        assert!(err.to_string().contains("value 3"), "{err}");
    }

    #[test]
    fn a_value_that_is_not_the_component_s_names_both() {
        let state = StateDict::of_value(&"seven").expect("value");
        let err = state.value_as::<u64>("Warmup").expect_err("not a number");
        assert!(err.to_string().contains("Warmup"), "{err}");
        assert!(err.to_string().contains("\"seven\""), "{err}");
    }
}
