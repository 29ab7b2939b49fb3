//! Whether training reaches the model: the optimizer must update the model's own parameters
//! (not copies, nor another model's), and the first step's backward must bring them gradients.
//! Either mistake would otherwise train nothing, silently: the loss stays flat.

use tch::Tensor;

use crate::{Error, Result};

/// How a tensor is told apart from copies: its first element's address and its size.
fn identity(t: &Tensor) -> (usize, i64) {
    (t.data_ptr() as usize, t.numel() as i64)
}

/// Up to three of `names`, quoted, and how many more.
fn some_of(names: &[&str]) -> String {
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    match names.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

/// Checks that every tensor the optimizer `updates` (where it says, [`crate::Optimizer::updates`])
/// is one of the model's `params`: an error before step 1 otherwise. Returns the names of the
/// model's parameters the optimizer leaves out (they will not train).
pub(crate) fn optimizer_updates_the_model(
    params: &[(String, Tensor)],
    updates: Option<Vec<Tensor>>,
) -> Result<Vec<&str>> {
    let Some(updates) = updates else {
        return Ok(Vec::new());
    };
    let model: std::collections::HashSet<(usize, i64)> =
        params.iter().map(|(_, p)| identity(p)).collect();
    let foreign = updates
        .iter()
        .filter(|t| !model.contains(&identity(t)))
        .count();
    if foreign > 0 {
        return Err(Error::Mismatch(format!(
            "the optimizer updates {foreign} of its {} tensors that are not the model's \
             parameters (the model has {}): training would change nothing the model computes \
             with. Build the optimizer over this model's `parameters()` (e.g. \
             `AdamW::new(model.parameters(), adamw)`), and have `Model::parameters` hand out \
             the tensors forward uses (`shallow_clone()`, not `copy()` or `to_kind(..)`)",
            updates.len(),
            params.len()
        )));
    }
    let updated: std::collections::HashSet<(usize, i64)> = updates.iter().map(identity).collect();
    Ok(params
        .iter()
        .filter(|(_, p)| !updated.contains(&identity(p)))
        .map(|(name, _)| name.as_str())
        .collect())
}

/// Says that the optimizer leaves `left_out` of the model's `total` parameters alone.
pub(crate) fn warn_left_out(left_out: &[&str], total: usize) {
    if !left_out.is_empty() {
        tracing::warn!(
            "the optimizer leaves {} of the model's {total} parameters out ({}): they will not \
             train",
            left_out.len(),
            some_of(left_out)
        );
    }
}

/// After the run's first step (`step`): an error when none of the model's `params` got a
/// gradient (forward's output does not depend on them), else the names of those that got none
/// (forward did not use them in this step).
pub(crate) fn gradients_reached(params: &[(String, Tensor)], step: u64) -> Result<Vec<&str>> {
    let missing: Vec<&str> = params
        .iter()
        .filter(|(_, p)| !p.grad().defined())
        .map(|(name, _)| name.as_str())
        .collect();
    if !params.is_empty() && missing.len() == params.len() {
        return Err(Error::Training(format!(
            "step {step}: backward brought a gradient to none of the model's {} parameters: \
             the loss does not depend on the tensors `Model::parameters` hands out (copies of \
             the weights, e.g. `copy()` or `to_kind(..)` instead of `shallow_clone()`, or a \
             forward pass that detaches its output), so training would change nothing",
            params.len()
        )));
    }
    Ok(missing)
}

/// After the run's first step (`step`, of `accum` micro-batches): an error when the loss
/// counted no token (`counted`, every rank's), since every label ignored gives a loss of 0 and
/// zero gradients.
pub(crate) fn tokens_counted(counted: &Tensor, step: u64, accum: usize) -> Result<()> {
    if counted.f_double_value(&[])? > 0.0 {
        return Ok(());
    }
    Err(Error::Training(format!(
        "step {step}: the loss counted no token in its {accum} micro-batch(es): every label is \
         ignored (the loss skips the ignore index, -100), so the loss is 0 and nothing trains; \
         check the dataloader's labels (its label convention, or a mask that hides every token)"
    )))
}

/// Says that `missing` of the model's `total` parameters got no gradient in step `step`.
pub(crate) fn warn_no_gradient(missing: &[&str], total: usize, step: u64) {
    if !missing.is_empty() {
        tracing::warn!(
            "step {step}: {} of the model's {total} parameters got no gradient ({}): forward did \
             not use them in this step (with data parallel, on no rank); a parameter forward \
             never uses does not train",
            missing.len(),
            some_of(missing)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn params(n: usize) -> Vec<(String, Tensor)> {
        (0..n)
            .map(|i| {
                let p = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
                (format!("p{i}"), p)
            })
            .collect()
    }

    #[test]
    fn an_optimizer_over_copies_is_refused_and_one_over_some_names_the_rest() -> Result<()> {
        let model = params(5);
        let all = model.iter().map(|(_, p)| p.shallow_clone()).collect();
        assert!(optimizer_updates_the_model(&model, Some(all))?.is_empty());
        let some = model[1..4].iter().map(|(_, p)| p.shallow_clone()).collect();
        assert_eq!(
            optimizer_updates_the_model(&model, Some(some))?,
            ["p0", "p4"]
        );
        assert_eq!(
            some_of(&["a", "b", "c", "d", "e"]),
            "`a`, `b`, `c` and 2 more"
        );
        // Copies: other memory, though equal values.
        let copies = model.iter().map(|(_, p)| p.copy()).collect();
        let err = optimizer_updates_the_model(&model, Some(copies))
            .expect_err("copies")
            .to_string();
        assert!(
            err.contains("5 of its 5 tensors") && err.contains("shallow_clone"),
            "{err}"
        );
        // An optimizer that does not say is not checked.
        assert!(optimizer_updates_the_model(&model, None)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_backward_that_reaches_no_parameter_stops_the_run() -> Result<()> {
        let model = params(3);
        let err = gradients_reached(&model, 1).expect_err("none").to_string();
        assert!(
            err.contains("step 1") && err.contains("none of the model's 3"),
            "{err}"
        );
        // Forward used p0 and p2: p1 is named.
        model[0]
            .1
            .f_sum(Kind::Float)?
            .f_add(&model[2].1.f_sum(Kind::Float)?)?
            .f_backward()?;
        assert_eq!(gradients_reached(&model, 1)?, ["p1"]);
        Ok(())
    }
}
