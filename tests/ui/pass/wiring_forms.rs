//! Forms of wiring the macro reads as written: the training settings under another name
//! (`#[role(training)]`; the standard flags still reach them), a section named with a raw
//! identifier (`r#type` is the section `type`), and an expression that binds a local of a
//! field's name from that field (`let dims = &dims;`: it still needs `dims`, declared after it).
//! A section moved into an expression without `.clone()` (each expression has its own copy), a
//! `?` on an error that is not titan's, a section's expression that runs once per run, and an
//! expression that borrows a component mutably.

use titan::cli::TrainArgs;
use titan::prelude::*;
use titan::tch::Device;

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many times the `type` section's expression ran.
static TYPE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A tiny Llama on a repeating token pattern.
#[experiment]
pub struct WiringForms {
    #[role(training)]
    #[config(TrainingConfig { steps: 9, batch_size: 2, seq_len: 32, samples: 0, device: "cpu".into(), ..TrainingConfig::default() })]
    run: TrainingConfig,
    #[config({ TYPE_RUNS.fetch_add(1, Ordering::SeqCst); AdamWConfig::default() })]
    r#type: AdamWConfig,
    #[build(Llama::new(LlamaConfig {
        vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
        num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
        ..LlamaConfig::tiny()
    }, Device::Cpu)?)]
    model: Llama,
    #[build({
        let dims = &dims;
        let period: u32 = "64".parse()?;
        PackedLoader::new(dims, (0..2048).map(|i| i % period).collect(), run.seq_len, run.batch_size, 0, true)?
    })]
    train_data: PackedLoader,
    #[build(ParallelDims::new(&LocalEnv::single(), Device::Cpu)?)]
    dims: ParallelDims,
    // A later expression may change a component it names (`&mut`).
    #[build({ let _: &mut Llama = &mut model; CausalLmLoss })]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), r#type)?)]
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
    assert_eq!(
        TYPE_RUNS.load(Ordering::SeqCst),
        1,
        "the `type` expression runs once"
    );
}
