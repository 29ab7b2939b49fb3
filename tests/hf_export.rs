//! A titan model and tokenizer exported to Hugging Face's form load in `transformers`
//! (`AutoModelForCausalLM`, `AutoTokenizer`): the same ids for the same text, logits within
//! 1e-4 (f32), and `generate` runs; and a model `transformers` saved loads into titan's Llama
//! (`Model::load_hf`, what `--init-from-hf` runs) with the same logits. Needs Python with torch (`.libtorch/site`) and transformers
//! (`bash benches/baseline/setup.sh` puts it in `.bench/site`); skipped with a message when
//! they are absent, unless `TITAN_REQUIRE_TRANSFORMERS=1` (CI) makes that a failure.

mod common;

use std::path::Path;

use common::python;

use anyhow::{Context, Result, ensure};
use titan::tch::{Device, Kind, Tensor};
use titan::{BpeConfig, BpeTokenizer, Llama, LlamaConfig, Model, TokenIds, Tokenizer};

const TEXT: &str = "Once upon a time, a little cat sat in the warm sun.";

/// Whether Python with torch and transformers is here (see [`common::have_python`]).
fn have_transformers(root: &Path) -> Result<bool> {
    common::have_python(root, "torch, transformers")
}

#[test]
fn transformers_loads_the_export_with_the_same_ids_and_logits() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !have_transformers(root)? {
        return Ok(());
    }

    let dir = tempfile::tempdir()?;
    let corpus: Vec<String> = (0..200)
        .map(|i| format!("Once upon a time, cat number {i} sat in the warm sun and purred."))
        .collect();
    let tokenizer = BpeTokenizer::train(
        &BpeConfig {
            vocab_size: 300,
            max_len: 64,
            ..BpeConfig::default()
        },
        corpus.iter(),
    )?;
    titan::device::seed_everything(0);
    // Trained with documents kept apart: one document is the same function (and transformers
    // has no key for it).
    let config = LlamaConfig {
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        attn_mask_type: titan::model::AttnMaskType::BlockCausal,
        ..LlamaConfig::tiny()
    }
    .with_tokenizer(&tokenizer);
    let model = Llama::new(config, Device::Cpu)?;
    let export = dir.path().join("hf");
    titan::checkpoint::export_hf(&model, &tokenizer, &export)?;
    for file in [
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        ensure!(export.join(file).is_file(), "{file} missing");
    }
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(export.join("config.json"))?)?;
    ensure!(written.get("attn_mask_type").is_none(), "{written}");
    ensure!(
        written["eos_token_id"] == serde_json::json!(tokenizer.eos_id()),
        "{written}"
    );

    let ids: Vec<i64> = tokenizer.encode(TEXT)?.into_iter().map(i64::from).collect();
    let input = Tensor::from_slice(&ids).unsqueeze(0);
    let logits = titan::tch::no_grad(|| model.forward(&TokenIds(input.shallow_clone())))?;
    let expect = dir.path().join("expect.safetensors");
    Tensor::write_safetensors(
        &[
            ("ids", Tensor::from_slice(&ids)),
            ("logits", logits.squeeze_dim(0).to_kind(Kind::Float)),
        ],
        &expect,
    )?;
    let out = python(root)
        .arg(root.join("tests/fixtures/check_hf_export.py"))
        .arg(&export)
        .arg(&expect)
        .arg(TEXT)
        .output()
        .context("running python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    ensure!(
        out.status.success(),
        "transformers disagrees with titan: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_model_transformers_saved_loads_with_the_same_logits() -> Result<()> {
    transformers_model_loads(None)
}

/// Llama 3's rotary scaling (as Llama 3.1 and 3.2 have) computes as transformers computes it.
#[test]
fn a_model_with_llama3_rope_scaling_loads_with_the_same_logits() -> Result<()> {
    transformers_model_loads(Some(titan::model::RopeScaling {
        rope_type: "llama3".into(),
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 16,
    }))
}

/// A model transformers initialised and saved (with `rope_scaling`, when given) loads into
/// titan's Llama with the logits transformers computed; a model of another shape is refused.
fn transformers_model_loads(rope_scaling: Option<titan::model::RopeScaling>) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !have_transformers(root)? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let hub = dir.path().join("hub");
    let expect = dir.path().join("expect.safetensors");
    let out = python(root)
        .arg(root.join("tests/fixtures/make_hf_llama.py"))
        .arg(&hub)
        .arg(&expect)
        .args(rope_scaling.as_ref().map(|_| "llama3"))
        .output()
        .context("running python3")?;
    ensure!(
        out.status.success(),
        "make_hf_llama.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = LlamaConfig {
        vocab_size: 300,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 64,
        rope_scaling: rope_scaling.clone(),
        ..LlamaConfig::tiny()
    };
    let mut model = Llama::new(config.clone(), Device::Cpu)?;
    model.load_hf(&hub)?;
    let expect: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&expect)?.into_iter().collect();
    let ids = expect["ids"].unsqueeze(0);
    let logits = titan::tch::no_grad(|| model.forward(&TokenIds(ids)))?.squeeze_dim(0);
    let diff = (logits - &expect["logits"]).abs().max().double_value(&[]);
    println!("max abs diff of the logits: {diff:e}");
    ensure!(
        diff <= 1e-4,
        "titan's logits differ from transformers' by {diff}"
    );
    // A model of another shape is refused, naming the field.
    let mut deeper = Llama::new(
        LlamaConfig {
            num_hidden_layers: 3,
            ..config
        },
        Device::Cpu,
    )?;
    let err = deeper.load_hf(&hub).expect_err("a misfit").to_string();
    ensure!(
        err.contains("`num_hidden_layers` is 2 there and 3"),
        "{err}"
    );
    if rope_scaling.is_some() {
        // Without the scaling, the same weights compute another function: refused by name.
        let mut plain = Llama::new(
            LlamaConfig {
                rope_scaling: None,
                ..config
            },
            Device::Cpu,
        )?;
        let err = plain.load_hf(&hub).expect_err("no scaling").to_string();
        ensure!(err.contains("rope_scaling"), "{err}");
    }
    Ok(())
}
