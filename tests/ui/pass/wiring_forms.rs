//! Forms of wiring the macro reads as written: the training settings under another name
//! (`#[role(training)]`; the standard flags still reach them), a section named with a raw
//! identifier (`r#type` is the section `type`), and an expression that binds a local of a
//! field's name from that field (`let dims = &dims;`: it still needs `dims`, declared after it).

use titan::cli::TrainArgs;
use titan::prelude::*;
use titan::tch::Device;

/// A tiny Llama on a repeating token pattern.
#[experiment]
pub struct WiringForms {
    #[role(training)]
    #[config(TrainingConfig { steps: 9, batch_size: 2, seq_len: 32, samples: 0, device: "cpu".into(), ..TrainingConfig::default() })]
    run: TrainingConfig,
    #[config(AdamWConfig::default())]
    r#type: AdamWConfig,
    #[build(Llama::new(LlamaConfig {
        vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
        num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
        ..LlamaConfig::tiny()
    }, Device::Cpu)?)]
    model: Llama,
    #[build({
        let dims = &dims;
        PackedLoader::new(dims, (0..2048).map(|i| i % 64).collect(), run.seq_len, run.batch_size, 0, true)?
    })]
    train_data: PackedLoader,
    #[build(ParallelDims::new(&LocalEnv::single(), Device::Cpu)?)]
    dims: ParallelDims,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), r#type.clone())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig { warmup_steps: 1, total_steps: run.steps, ..WarmupConfig::default() })?)]
    lr_scheduler: Warmup<AdamW>,
}

pub fn main() {
    let dir = std::env::temp_dir().join(format!("titan-ui-forms-{}", std::process::id()));
    let dir_flag = dir.display().to_string();
    let args = TrainArgs::try_parse_from([
        "forms",
        "--output-dir",
        &dir_flag,
        "--steps",
        "2",
        "--log-every",
        "1",
        "--set",
        "type.lr=0.25",
    ])
    .expect("flags");
    titan::experiment::run::<WiringForms>(args).expect("trains");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    let _ = std::fs::remove_dir_all(&dir);
    // Two steps (`--steps` reached `run`), at the rate `type.lr` set (warmup of 1 step).
    assert!(
        metrics.contains("\"step\":2") && !metrics.contains("\"step\":3"),
        "{metrics}"
    );
    assert!(metrics.contains("\"lr\":0.25"), "{metrics}");
}
