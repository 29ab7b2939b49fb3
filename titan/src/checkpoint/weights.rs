//! Weights from safetensors files into a model's parameters, by name: every name and shape is
//! checked before any tensor is copied, so weights that do not fit leave the model as it was.
//! Checkpoints, `--export-hf` and `--init-from-hf` all load through here.

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

use crate::{Error, Result};

/// Copies `saved` (name → tensor) into `params`, converting dtype and device. `skip` names
/// saved tensors that are not parameters (buffers a writer may add); any other name missing on
/// either side, or a shape that differs, is `misfit`'s error, naming the weight and both
/// shapes. Nothing is copied unless everything fits.
pub fn load_weights(
    mut saved: BTreeMap<String, Tensor>,
    params: &[(String, Tensor)],
    skip: impl Fn(&str) -> bool,
    misfit: impl Fn(String) -> Error,
) -> Result<()> {
    let mut copies = Vec::with_capacity(params.len());
    for (name, p) in params {
        let Some(w) = saved.remove(name) else {
            return Err(misfit(format!(
                "it has no weight `{name}`, which the model has"
            )));
        };
        if w.size() != p.size() {
            return Err(misfit(format!(
                "weight `{name}` has shape {:?} there and {:?} in the model",
                w.size(),
                p.size()
            )));
        }
        copies.push((p.shallow_clone(), w));
    }
    if let Some(extra) = saved.keys().find(|name| !skip(name)) {
        return Err(misfit(format!(
            "it has weight `{extra}`, which the model has not"
        )));
    }
    let _guard = tch::no_grad_guard();
    for (mut p, w) in copies {
        p.f_copy_(&w.f_to_kind(p.kind())?)?;
    }
    Ok(())
}

/// Every tensor of the safetensors files `files`, by name; a name in two files is an error.
pub fn read_weights(files: &[impl AsRef<Path>]) -> Result<BTreeMap<String, Tensor>> {
    let mut all = BTreeMap::new();
    for file in files {
        let file = file.as_ref();
        for (name, tensor) in Tensor::read_safetensors(file)? {
            if all.insert(name.clone(), tensor).is_some() {
                return Err(Error::Checkpoint(format!(
                    "{}: weight `{name}` is also in another file",
                    file.display()
                )));
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn params() -> Vec<(String, Tensor)> {
        vec![
            (
                "a".into(),
                Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            ),
            ("b".into(), Tensor::zeros([4], (Kind::Float, Device::Cpu))),
        ]
    }

    fn saved(b_len: i64) -> BTreeMap<String, Tensor> {
        BTreeMap::from([
            (
                "a".into(),
                Tensor::ones([2, 3], (Kind::BFloat16, Device::Cpu)),
            ),
            (
                "b".into(),
                Tensor::ones([b_len], (Kind::Float, Device::Cpu)),
            ),
        ])
    }

    fn misfit(what: String) -> Error {
        Error::Checkpoint(what)
    }

    #[test]
    fn weights_that_fit_are_copied_in_the_parameter_s_dtype() -> Result<()> {
        let params = params();
        load_weights(saved(4), &params, |_| false, misfit)?;
        assert_eq!(params[0].1.kind(), Kind::Float);
        assert_eq!(params[0].1.f_sum(Kind::Float)?.f_double_value(&[])?, 6.0);
        Ok(())
    }

    #[test]
    fn a_misfit_names_the_weight_and_copies_nothing() -> Result<()> {
        let params = params();
        let err = load_weights(saved(5), &params, |_| false, misfit).expect_err("shape");
        assert!(
            err.to_string()
                .contains("weight `b` has shape [5] there and [4] in the model"),
            "{err}"
        );
        assert_eq!(params[0].1.f_sum(Kind::Float)?.f_double_value(&[])?, 0.0);
        let mut extra = saved(4);
        extra.insert("c".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        let err = load_weights(extra, &params, |_| false, misfit).expect_err("extra");
        assert!(err.to_string().contains("weight `c`"), "{err}");
        let mut skipped = saved(4);
        skipped.insert("c".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        load_weights(skipped, &params, |name| name == "c", misfit)?;
        let mut missing = saved(4);
        missing.remove("a");
        let err = load_weights(missing, &params, |_| false, misfit).expect_err("missing");
        assert!(err.to_string().contains("no weight `a`"), "{err}");
        Ok(())
    }
}
