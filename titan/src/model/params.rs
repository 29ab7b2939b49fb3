//! A model's parameters as the model declares them: each with its Hugging Face name and the
//! group that tells optimizers how to treat it (weight decay or not).

use std::collections::BTreeMap;

use tch::{Tensor, nn};

use crate::{Error, Result};

/// How optimizers treat a parameter; the model says which group each one is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ParamGroup {
    /// Takes weight decay (the matrices of linear layers).
    Decay,
    /// Takes no weight decay (norm weights, biases, embeddings).
    NoDecay,
}

/// One trainable parameter: its name, the tensor (sharing storage with the model's) and its
/// group.
#[derive(Debug)]
pub struct Parameter {
    /// Its name, e.g. `model.layers.0.mlp.up_proj.weight`.
    pub name: String,
    /// The parameter itself.
    pub tensor: Tensor,
    /// How optimizers treat it.
    pub group: ParamGroup,
}

/// A model's trainable parameters, sorted by name (a stable order across runs), handed to
/// optimizer factories and checkpoints.
#[derive(Debug, Default)]
pub struct Parameters {
    params: Vec<Parameter>,
}

impl Parameters {
    /// The trainable variables of `vs`, every one in [`ParamGroup::Decay`].
    pub fn new(vs: &nn::VarStore) -> Self {
        Self::grouped(vs, |_| ParamGroup::Decay)
    }

    /// The trainable variables of `vs`, each in the group `group` gives its name.
    pub fn grouped(vs: &nn::VarStore, group: impl Fn(&str) -> ParamGroup) -> Self {
        let mut params: Vec<Parameter> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, tensor)| Parameter {
                group: group(&name),
                name,
                tensor,
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Self { params }
    }

    /// Parameters from a list (for models that keep their own tensors); names must be unique.
    pub fn from_list(mut params: Vec<Parameter>) -> Result<Self> {
        params.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = params.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::Mismatch(format!(
                "two parameters are named `{}`: parameter names must be unique",
                pair[0].name
            )));
        }
        Ok(Self { params })
    }

    /// The same parameters, each in the group `group` gives its name and the model's group:
    /// the optimizer's choice over the model's, e.g. torchtitan's weight decay on every
    /// parameter, `model.parameters().regrouped(|_, _| ParamGroup::Decay)`.
    pub fn regrouped(mut self, group: impl Fn(&str, ParamGroup) -> ParamGroup) -> Self {
        for p in &mut self.params {
            p.group = group(&p.name, p.group);
        }
        self
    }

    /// Every parameter, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Parameter> {
        self.params.iter()
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// (name, tensor) pairs sorted by name.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.tensor.shallow_clone()))
            .collect()
    }

    /// Total number of trainable scalars.
    pub fn count(&self) -> i64 {
        self.params.iter().map(|p| p.tensor.numel() as i64).sum()
    }

    /// Scalars per group, for a start-up line or a check.
    pub fn count_by_group(&self) -> BTreeMap<ParamGroup, i64> {
        let mut counts = BTreeMap::new();
        for p in &self.params {
            *counts.entry(p.group).or_default() += p.tensor.numel() as i64;
        }
        counts
    }
}

impl IntoIterator for Parameters {
    type Item = Parameter;
    type IntoIter = std::vec::IntoIter<Parameter>;
    fn into_iter(self) -> Self::IntoIter {
        self.params.into_iter()
    }
}

impl<'a> IntoIterator for &'a Parameters {
    type Item = &'a Parameter;
    type IntoIter = std::slice::Iter<'a, Parameter>;
    fn into_iter(self) -> Self::IntoIter {
        self.params.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn groups_come_from_the_model_and_names_are_unique() -> Result<()> {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().f_var("w", &[2, 3], nn::Init::Const(0.0))?;
        let _ = vs.root().f_var("b", &[3], nn::Init::Const(0.0))?;
        let params = Parameters::grouped(&vs, |name| {
            if name == "b" {
                ParamGroup::NoDecay
            } else {
                ParamGroup::Decay
            }
        });
        let seen: Vec<(&str, ParamGroup)> =
            params.iter().map(|p| (p.name.as_str(), p.group)).collect();
        assert_eq!(seen, [("b", ParamGroup::NoDecay), ("w", ParamGroup::Decay)]);
        assert_eq!(params.count_by_group()[&ParamGroup::Decay], 6);
        // The optimizer's choice over the model's: torchtitan decays every parameter.
        let all = params.regrouped(|_, _| ParamGroup::Decay);
        assert!(all.iter().all(|p| p.group == ParamGroup::Decay));
        let kept = all.regrouped(|name, group| match name {
            "w" => ParamGroup::NoDecay,
            _ => group,
        });
        let seen: Vec<(&str, ParamGroup)> =
            kept.iter().map(|p| (p.name.as_str(), p.group)).collect();
        assert_eq!(seen, [("b", ParamGroup::Decay), ("w", ParamGroup::NoDecay)]);
        let twice = (0..2)
            .map(|_| Parameter {
                name: "x".into(),
                tensor: Tensor::zeros([1], (tch::Kind::Float, Device::Cpu)),
                group: ParamGroup::Decay,
            })
            .collect();
        let err = Parameters::from_list(twice)
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("`x`"), "{err}");
        Ok(())
    }
}
