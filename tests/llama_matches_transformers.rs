//! titan's Llama against `transformers.LlamaForCausalLM`: same weights, same input, logits
//! within 1e-4 (f32). Fixtures come from `fixtures/make_llama_fixture.py`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use titan::tch::{Device, Tensor};
use titan::{Llama, LlamaConfig, Model};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_model() -> Result<Llama> {
    let path = fixture("llama_tiny_config.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let config: LlamaConfig = serde_json::from_str(&text)?;
    assert!(
        config.num_key_value_heads < config.num_attention_heads,
        "fixture must use GQA"
    );
    let mut model = Llama::new(config, Device::Cpu)?;
    model.load_safetensors(fixture("llama_tiny_weights.safetensors"))?;
    Ok(model)
}

#[test]
fn logits_match_transformers() -> Result<()> {
    let model = load_model()?;
    let io = Tensor::read_safetensors(fixture("llama_tiny_io.safetensors"))?;
    let get = |name: &str| {
        io.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("{name} missing from the fixture"))
    };
    let (input_ids, expected) = (get("input_ids")?, get("logits")?);
    let logits = model.logits(&input_ids)?;
    assert_eq!(logits.size(), expected.size());
    let diff = (&logits - &expected).abs().max().double_value(&[]);
    let scale = expected.abs().max().double_value(&[]);
    println!("max |diff| = {diff:e} (max |logit| = {scale:.3})");
    assert!(diff <= 1e-4, "max abs diff {diff:e} > 1e-4");
    Ok(())
}

#[test]
fn parameter_names_are_hugging_face_names() -> Result<()> {
    let model = load_model()?;
    let ours: BTreeSet<String> = model
        .parameters()
        .named()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let theirs: BTreeSet<String> =
        Tensor::read_safetensors(fixture("llama_tiny_weights.safetensors"))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains("model.layers.1.self_attn.q_proj.weight"));
    assert!(ours.contains("lm_head.weight"));
    Ok(())
}

#[test]
fn saved_weights_reload_identically() -> Result<()> {
    let model = load_model()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.safetensors");
    model.save_safetensors(&path)?;
    let mut again = Llama::new(model.config().clone(), Device::Cpu)?;
    again.load_safetensors(&path)?;
    let ids = Tensor::from_slice(&[1i64, 5, 9, 2]).view([1, 4]);
    assert!(model.logits(&ids)?.equal(&again.logits(&ids)?));
    Ok(())
}
