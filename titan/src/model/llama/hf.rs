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
    let mut config = serde_json::to_value(&llama.config)?;
    let generation = serde_json::json!({
        "bos_token_id": tokens.bos,
        "eos_token_id": tokens.eos,
        "pad_token_id": tokens.pad,
    });
    if let (Some(map), Some(ids)) = (config.as_object_mut(), generation.as_object()) {
        map.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        map.insert("model_type".into(), "llama".into());
        map.insert("hidden_act".into(), "silu".into());
        map.insert("head_dim".into(), llama.config.head_dim().into());
        map.insert("attention_bias".into(), false.into());
        map.insert("mlp_bias".into(), false.into());
        map.insert("torch_dtype".into(), "float32".into());
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
    if let Some(scaling) = field("rope_scaling") {
        return Err(format!(
            "`rope_scaling` is {scaling} there, and titan's Llama has no rope scaling"
        ));
    }
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
    if let Some(kind) = field("rope_parameters")
        .and_then(|p| p.get("rope_type"))
        .and_then(Value::as_str)
        .filter(|kind| *kind != "default")
    {
        return Err(format!(
            "`rope_parameters.rope_type` is {kind:?} there, and titan's Llama has no rope scaling"
        ));
    }
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
            return Err(format!(
                "`{key}` is {got} there and {} in the experiment's model",
                ours[key]
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(config: &LlamaConfig) -> Value {
        let mut v = serde_json::to_value(config).expect("config");
        if let Some(map) = v.as_object_mut() {
            map.insert("model_type".into(), "llama".into());
            map.insert("hidden_act".into(), "silu".into());
        }
        v
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
