//! Checkpoints through an experiment binary's `run`: a run resumed from its step-N checkpoint
//! logs, bit for bit, the losses and gradient norms of the run that went on (packed and padded
//! layouts, with gradient accumulation); a run whose checkpoints reach its last step is
//! complete; a checkpoint that does not fit the model is refused naming the weight.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

#[allow(dead_code)]
#[path = "../experiments/tiny_llama.rs"]
mod tiny_llama;

/// tiny_llama shrunk for a test, `steps` steps of 2 rows of 64 tokens, a checkpoint every 3,
/// in `dir`, with `extra` flags.
fn run_for(steps: u64, dir: &Path, extra: &[&str]) -> titan::Result<()> {
    let out = dir.display().to_string();
    let steps = steps.to_string();
    let mut args = vec![
        "tiny_llama",
        "--steps",
        &steps,
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--samples",
        "0",
        "--log-every",
        "1",
        "--checkpoint-every",
        "3",
        "--output-dir",
        &out,
        "--set",
        "llama.num_hidden_layers=1",
        "--set",
        "training.seq_len=64",
        "--set",
        "dataset.tokenizer_sample=300",
    ];
    args.extend_from_slice(extra);
    let args = titan::cli::TrainArgs::try_parse_from(args)?;
    titan::experiment::run::<tiny_llama::TinyLlama>(args)
}

/// [`run_for`] 6 steps.
fn run(dir: &Path, extra: &[&str]) -> titan::Result<()> {
    run_for(6, dir, extra)
}

/// (step, loss, grad_norm) of every step record of `dir`'s `metrics.jsonl`, as written.
fn steps(dir: &Path) -> Result<Vec<(u64, String, String)>> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        if v.get("loss").is_some() {
            let step = v["step"].as_u64().context("step")?;
            out.push((step, v["loss"].to_string(), v["grad_norm"].to_string()));
        }
    }
    Ok(out)
}

/// Runs 6 steps, drops the step-6 checkpoint (as if the run had been killed after step 3's),
/// reruns the same command and checks that steps 4 to 6 repeat exactly.
fn resume_repeats_the_run(extra: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    run(dir.path(), extra)?;
    let first = steps(dir.path())?;
    ensure!(first.len() == 6, "{first:?}");
    let checkpoints = dir.path().join("checkpoints");
    ensure!(checkpoints.join("step-3/model.safetensors").is_file());
    std::fs::remove_dir_all(checkpoints.join("step-6"))?;
    run(dir.path(), extra)?;
    let all = steps(dir.path())?;
    // The resumed run adds steps 4 to 6 to the metrics, as the first run logged them.
    ensure!(all.len() == 9, "{all:?}");
    ensure!(
        all[6..] == first[3..],
        "resumed {:?}\nstraight {:?}",
        &all[6..],
        &first[3..]
    );
    ensure!(
        checkpoints.join("step-6").is_dir(),
        "the resumed run saved step 6 again"
    );
    Ok(())
}

#[test]
fn a_resumed_run_logs_the_same_losses_bit_for_bit() -> Result<()> {
    resume_repeats_the_run(&[])
}

#[test]
fn resume_is_exact_with_accumulation_and_the_padded_layout() -> Result<()> {
    resume_repeats_the_run(&["--grad-accum-steps", "2", "--set", "dataset.layout=padded"])
}

#[test]
fn a_complete_run_does_nothing_and_a_misfit_checkpoint_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run(dir.path(), &[])?;
    let before = std::fs::read_to_string(dir.path().join("metrics.jsonl"))?;
    // Its checkpoints reach step 6: rerunning the command trains nothing.
    run(dir.path(), &[])?;
    ensure!(std::fs::read_to_string(dir.path().join("metrics.jsonl"))? == before);
    // Two more steps resume from step 6 into the same directory.
    run_for(8, dir.path(), &[])?;
    let all = steps(dir.path())?;
    ensure!(
        all.iter().map(|s| s.0).collect::<Vec<_>>() == [1, 2, 3, 4, 5, 6, 7, 8],
        "{all:?}"
    );
    // A wider model does not fit the checkpoint: refused, naming a weight and both shapes.
    let err = run_for(10, dir.path(), &["--set", "llama.intermediate_size=1024"])
        .expect_err("a misfit checkpoint")
        .to_string();
    ensure!(
        err.contains("mlp")
            && err.contains("1024")
            && err.contains("768")
            && err.contains("--output-dir"),
        "{err}"
    );
    // Nothing of the old run was touched.
    ensure!(dir.path().join("checkpoints/step-8").is_dir());
    ensure!(steps(dir.path())?.len() == 8);
    Ok(())
}
