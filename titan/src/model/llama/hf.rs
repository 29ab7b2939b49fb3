//! Llama's Hugging Face form, both ways: `config.json`, `generation_config.json` and
//! `model.safetensors` as `transformers.LlamaForCausalLM` writes and reads them. Loading checks
//! every field of the directory's config that shapes the weights or the function against the
//! model's own before any weight is read.

use std::path::Path;

use serde_json::Value;
use tch::{Device, Tensor};

use super::{Llama, LlamaConfig};
use crate::checkpoint::{load_weights, read_weights};
use crate::diff::same_value;
use crate::model::{Model, SpecialTokens};
use crate::{Error, Result};

/// Writes `llama` into `dir` as `transformers.AutoModelForCausalLM` loads it, with the
/// tokenizer's special ids in its configs.
pub(super) fn save(llama: &Llama, dir: &Path, tokens: &SpecialTokens) -> Result<()> {
    let mut config = config_json(&llama.config)?;
    let generation = serde_json::json!({
        "bos_token_id": tokens.bos,
        "eos_token_id": tokens.eos,
        "pad_token_id": tokens.pad,
    });
    if let (Some(map), Some(ids)) = (config.as_object_mut(), generation.as_object()) {
        map.extend(ids.clone());
    }
    crate::tokenizer::write_json(&dir.join("config.json"), &config)?;
    crate::tokenizer::write_json(&dir.join("generation_config.json"), &generation)?;
    // Weights as f32 on the host, Hugging Face names (a tied `lm_head` is not stored).
    let weights = llama
        .parameters()
        .iter()
        .map(|p| Ok((p.name.clone(), p.tensor.f_detach()?.f_to(Device::Cpu)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::write_safetensors(
        &weights,
        dir.join("model.safetensors"),
    )?)
}

/// Loads the weights of the Hugging Face directory `dir` into `llama`, whose config must match
/// the directory's in every field that shapes the weights or the function.
pub(super) fn load(llama: &mut Llama, dir: &Path) -> Result<()> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let theirs: Value = serde_json::from_str(&text).map_err(|e| {
        Error::Checkpoint(format!("{}: not a JSON config: {e}", config_path.display()))
    })?;
    check_config(&theirs, &llama.config).map_err(|why| {
        Error::Checkpoint(format!(
            "{} does not fit the experiment's model: {why}",
            config_path.display()
        ))
    })?;
    // Not the weights' shape, but what the model is said to handle: kept, and said.
    let their_positions = theirs
        .get("max_position_embeddings")
        .and_then(Value::as_i64);
    if let Some(positions) = their_positions.filter(|&p| p != llama.config.max_position_embeddings)
    {
        let keep = match positions > llama.config.max_position_embeddings {
            true => format!(
                " (the model config's `max_position_embeddings = {positions}` keeps the directory's)"
            ),
            false => String::new(),
        };
        tracing::warn!(
            "{}: `max_position_embeddings` is {positions} there and {} in the experiment's \
             model, which trains and exports with its own{keep}",
            config_path.display(),
            llama.config.max_position_embeddings
        );
    }
    let files = weight_files(dir)?;
    let saved = read_weights(&files)?;
    let tied = llama.config.tie_word_embeddings;
    // Buffers older exports carry, and a tied head some writers store anyway.
    let skip =
        |name: &str| name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight");
    let params = llama.parameters().named();
    load_weights(saved, &params, skip, |what| {
        Error::Checkpoint(format!(
            "{} does not fit the experiment's model: {what}",
            dir.display()
        ))
    })
}

/// Why `theirs` (a `config.json`) does not describe a model `ours` describes, if it does not.
fn check_config(theirs: &Value, ours: &LlamaConfig) -> std::result::Result<(), String> {
    let field = |key: &str| theirs.get(key).filter(|v| !v.is_null());
    match field("model_type").and_then(Value::as_str) {
        Some("llama") => {}
        other => {
            return Err(format!(
                "`model_type` is {} there, and titan's Llama reads \"llama\"",
                other.map_or("missing".to_string(), |t| format!("{t:?}"))
            ));
        }
    }
    // Fields titan's Llama has no other value for; absent means the same as in transformers.
    let fixed: [(&str, Value); 4] = [
        ("hidden_act", "silu".into()),
        ("attention_bias", false.into()),
        ("mlp_bias", false.into()),
        ("head_dim", ours.head_dim().into()),
    ];
    for (key, want) in fixed {
        if let Some(got) = field(key)
            && !same_value(got, &want)
        {
            return Err(format!("`{key}` is {got} there and {want} here"));
        }
    }
    check_rope_scaling(theirs, ours)?;
    let heads = ours.num_attention_heads;
    // transformers' LlamaConfig defaults, for fields a config may leave out.
    let defaults = [
        ("num_key_value_heads", Value::from(heads)),
        ("rope_theta", 10_000.0.into()),
        ("rms_norm_eps", 1e-6.into()),
        ("tie_word_embeddings", false.into()),
    ];
    // transformers 5 keeps `rope_theta` (and the scaling type) under `rope_parameters`.
    let nested_theta = field("rope_parameters")
        .and_then(|p| p.get("rope_theta"))
        .filter(|v| !v.is_null());
    let ours = serde_json::to_value(ours).map_err(|e| e.to_string())?;
    for key in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rope_theta",
        "rms_norm_eps",
        "tie_word_embeddings",
    ] {
        let default = defaults.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        let nested = nested_theta.filter(|_| key == "rope_theta");
        let Some(got) = field(key).or(nested).or(default) else {
            return Err(format!("`{key}` is missing there"));
        };
        if !same_value(got, &ours[key]) {
            // The model's vocabulary follows the run's tokenizer, not this directory's.
            let hint = match key {
                "vocab_size" => {
                    " (the model has a row per id of the run's tokenizer: train with this \
                     directory's tokenizer, by copying its tokenizer.json into the output \
                     directory before the run)"
                }
                _ => "",
            };
            return Err(format!(
                "`{key}` is {got} there and {} in the experiment's model{hint}",
                ours[key]
            ));
        }
    }
    Ok(())
}

/// Why the rotary scaling of `theirs` (`rope_scaling`, or transformers 5's `rope_parameters`)
/// is not `ours`'s, if it is not: none, or Llama 3's with the same four numbers.
fn check_rope_scaling(theirs: &Value, ours: &LlamaConfig) -> std::result::Result<(), String> {
    let (key, scaling) = match (theirs.get("rope_scaling"), theirs.get("rope_parameters")) {
        (Some(s), _) if !s.is_null() => ("rope_scaling", s),
        (_, Some(p)) if !p.is_null() => ("rope_parameters", p),
        _ => ("rope_scaling", &Value::Null),
    };
    // `type` is the older spelling of `rope_type`.
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match (kind, &ours.rope_scaling) {
        ("default", None) => Ok(()),
        ("default", Some(_)) => Err(format!(
            "`{key}` has no scaling there, and the experiment's model has Llama 3's \
             (`rope_scaling`)"
        )),
        ("llama3", None) => Err(format!(
            "`{key}` is Llama 3's scaling there ({scaling}), and the experiment's model has none \
             (set LlamaConfig.rope_scaling)"
        )),
        ("llama3", Some(mine)) => {
            let mine = serde_json::to_value(mine).map_err(|e| e.to_string())?;
            for name in [
                "factor",
                "low_freq_factor",
                "high_freq_factor",
                "original_max_position_embeddings",
            ] {
                let got = scaling.get(name).unwrap_or(&Value::Null);
                if !same_value(got, &mine[name]) {
                    return Err(format!(
                        "`{key}.{name}` is {got} there and {} in the experiment's model",
                        mine[name]
                    ));
                }
            }
            Ok(())
        }
        (other, _) => Err(format!(
            "`{key}` is of type {other:?} there, and titan's Llama has Llama 3's scaling \
             (\"llama3\") or none"
        )),
    }
}

/// The weight files of `dir`: `model.safetensors`, or the shards its index lists.
fn weight_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|e| {
        Error::Checkpoint(format!(
            "{}: neither model.safetensors nor its index ({e})",
            dir.display()
        ))
    })?;
    let index: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", index.display())))?;
    let Some(map) = index.get("weight_map").and_then(Value::as_object) else {
        return Err(Error::Checkpoint(format!(
            "{}: no `weight_map`",
            dir.join("model.safetensors.index.json").display()
        )));
    };
    let mut shards: Vec<&str> = map.values().filter_map(Value::as_str).collect();
    shards.sort_unstable();
    shards.dedup();
    // Shards are files of `dir` itself: a name with a directory in it is refused.
    if let Some(bad) = shards
        .iter()
        .find(|s| Path::new(s).file_name() != Some(std::ffi::OsStr::new(s)))
    {
        return Err(Error::Checkpoint(format!(
            "{}: shard `{bad}` is not a file name in that directory",
            dir.join("model.safetensors.index.json").display()
        )));
    }
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

/// `config` as an export's `config.json` holds it, before the tokenizer's special ids:
/// transformers' keys for what titan's Llama is.
fn config_json(config: &LlamaConfig) -> Result<Value> {
    let mut value = serde_json::to_value(config)?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        // How training laid documents into rows is not the model's: transformers has no key.
        map.remove("attn_mask_type");
        map.insert("model_type".into(), "llama".into());
        map.insert("hidden_act".into(), "silu".into());
        map.insert("head_dim".into(), config.head_dim().into());
        map.insert("attention_bias".into(), false.into());
        map.insert("mlp_bias".into(), false.into());
        map.insert("torch_dtype".into(), "float32".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(config: &LlamaConfig) -> Value {
        config_json(config).expect("config")
    }

    #[test]
    fn a_config_that_differs_is_refused_naming_the_field_and_both_values() {
        let ours = LlamaConfig::tiny();
        assert_eq!(check_config(&exported(&ours), &ours), Ok(()));
        let mut theirs = exported(&ours);
        theirs["num_hidden_layers"] = 8.into();
        let err = check_config(&theirs, &ours).expect_err("layers");
        assert!(
            err.contains("`num_hidden_layers` is 8 there and 4"),
            "{err}"
        );
        let mut theirs = exported(&ours);
        theirs["rms_norm_eps"] = 1e-5.into();
        let err = check_config(&theirs, &ours).expect_err("eps");
        assert!(err.contains("rms_norm_eps"), "{err}");
        let mut theirs = exported(&ours);
        theirs["model_type"] = "mistral".into();
        let err = check_config(&theirs, &ours).expect_err("type");
        assert!(err.contains("\"mistral\""), "{err}");
        let mut theirs = exported(&ours);
        theirs["rope_scaling"] = serde_json::json!({"rope_type": "llama3"});
        let err = check_config(&theirs, &ours).expect_err("scaling");
        assert!(err.contains("rope_scaling"), "{err}");
    }

    /// Llama 3's scaling is read as transformers 4 writes it (`rope_scaling`) and as 5 does
    /// (`rope_parameters`), and a different number or a missing scaling is named.
    #[test]
    fn llama3_rope_scaling_is_compared_in_both_spellings() {
        let ours = LlamaConfig::llama3_1b();
        let theirs = exported(&ours);
        assert_eq!(check_config(&theirs, &ours), Ok(()));
        let mut nested = theirs.clone();
        if let Some(map) = nested.as_object_mut() {
            let mut params = map.remove("rope_scaling").unwrap_or_default();
            params["rope_theta"] = map.remove("rope_theta").unwrap_or_default();
            map.insert("rope_parameters".into(), params);
        }
        assert_eq!(check_config(&nested, &ours), Ok(()));
        let mut other = theirs.clone();
        other["rope_scaling"]["factor"] = 8.0.into();
        let err = check_config(&other, &ours).expect_err("factor");
        assert!(
            err.contains("`rope_scaling.factor` is 8.0 there and 32.0"),
            "{err}"
        );
        let plain = LlamaConfig {
            rope_scaling: None,
            ..ours.clone()
        };
        let err = check_config(&theirs, &plain).expect_err("no scaling here");
        assert!(err.contains("set LlamaConfig.rope_scaling"), "{err}");
        let err = check_config(&exported(&plain), &ours).expect_err("no scaling there");
        assert!(err.contains("no scaling there"), "{err}");
        let mut yarn = theirs;
        yarn["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        let err = check_config(&yarn, &ours).expect_err("yarn");
        assert!(err.contains("\"yarn\""), "{err}");
    }

    #[test]
    fn rope_theta_under_rope_parameters_counts() {
        let ours = LlamaConfig {
            rope_theta: 500_000.0,
            ..LlamaConfig::tiny()
        };
        let mut theirs = exported(&ours);
        if let Some(map) = theirs.as_object_mut() {
            map.remove("rope_theta");
            map.insert(
                "rope_parameters".into(),
                serde_json::json!({"rope_type": "default", "rope_theta": 500000.0}),
            );
        }
        assert_eq!(check_config(&theirs, &ours), Ok(()));
    }

    #[test]
    fn fields_left_out_take_transformers_defaults() {
        let ours = LlamaConfig {
            num_key_value_heads: 2,
            num_attention_heads: 2,
            rope_theta: 10_000.0,
            ..LlamaConfig::tiny()
        };
        let mut theirs = exported(&ours);
        if let Some(map) = theirs.as_object_mut() {
            map.remove("num_key_value_heads");
            map.remove("rope_theta");
            map.insert("rope_theta".into(), 10000.into());
        }
        assert_eq!(check_config(&theirs, &ours), Ok(()));
    }
}
