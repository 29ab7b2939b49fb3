//! Helpers shared by the integration tests: the lock around libtorch's global generator, a
//! small seeded Llama, a padded token batch, a tensor difference, and a short run of an
//! experiment as its binary would make it.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use anyhow::Result;
use titan::data::{HfLabels, IGNORE_INDEX, TokenIds};
use titan::tch::{Device, Kind, Tensor};
use titan::{Llama, LlamaConfig};

/// Tests run on parallel threads and libtorch's generator is global: whoever seeds and draws
/// holds this lock, so two models built from seed 0 are the same model.
pub static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A 2-layer Llama (vocab 50, hidden 32) from seed 0 on the CPU.
pub fn small_llama() -> Result<Llama> {
    small_llama_on(Device::Cpu)
}

/// A 2-layer Llama (vocab 50, hidden 32) from seed 0 on `device`.
pub fn small_llama_on(device: Device) -> Result<Llama> {
    small_llama_of(small_llama_config(), device)
}

/// The settings of [`small_llama_on`]'s model.
pub fn small_llama_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 50,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 32,
        ..LlamaConfig::tiny()
    }
}

/// A Llama of `config` from seed 0 on `device`.
pub fn small_llama_of(config: LlamaConfig, device: Device) -> Result<Llama> {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    titan::device::seed_everything(0);
    Ok(Llama::new(config, device)?)
}

/// The largest absolute elementwise difference of `a` and `b`.
pub fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok((a - b).abs().max().double_value(&[]))
}

/// `rows` random sequences of `t` token ids (seed 1) and their labels, with padding.
pub fn batch(rows: i64, t: i64) -> (TokenIds, HfLabels) {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    titan::device::seed_everything(1);
    let ids = Tensor::randint(50, [rows, t], (Kind::Int64, Device::Cpu));
    // Row r ends in r % 7 padded positions: micro-batches count different numbers of tokens.
    let labels = ids.copy();
    for r in 0..rows {
        let pads = r % 7;
        if pads > 0 {
            let _ = labels.get(r).narrow(0, t - pads, pads).fill_(IGNORE_INDEX);
        }
    }
    (TokenIds(ids), HfLabels(labels))
}

/// tiny_llama's flags for a run of seconds on the CPU: 1 layer, sequences of 64, 2 rows, a
/// tokenizer trained on 300 stories, no samples.
pub const SHRUNK: &[&str] = &[
    "--batch-size",
    "2",
    "--device",
    "cpu",
    "--samples",
    "0",
    "--set",
    "llama.num_hidden_layers=1",
    "--set",
    "training.seq_len=64",
    "--set",
    "dataset.tokenizer_sample=300",
];

/// Runs experiment `E` (tiny_llama's settings sections) shrunk for a test, as its binary would:
/// `steps` steps of 2 rows of 64 tokens on the CPU, one layer, a tokenizer trained on 300
/// documents, no samples, in `dir`, with `extra` flags after these.
pub fn run_shrunk<E: titan::Experiment>(
    dir: &std::path::Path,
    steps: u64,
    extra: &[&str],
) -> titan::Result<()> {
    let out = dir.display().to_string();
    let steps = steps.to_string();
    let mut args = vec!["x", "--steps", &steps, "--output-dir", &out];
    args.extend_from_slice(SHRUNK);
    args.extend_from_slice(extra);
    titan::experiment::run::<E>(titan::cli::TrainArgs::try_parse_from(args)?)
}

/// Runs experiment `E` for two steps of one row on the CPU, as its binary would with `flags`
/// (after the common ones); returns the run's `metrics.jsonl`.
pub fn two_steps<E: titan::Experiment>(flags: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().display().to_string();
    let mut args = vec![
        "x",
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--samples",
        "0",
        "--output-dir",
        &out,
    ];
    args.extend_from_slice(flags);
    let args = titan::cli::TrainArgs::try_parse_from(args).expect("flags");
    titan::experiment::run::<E>(args).expect("trains");
    std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metrics")
}

/// Python with the project's torch (`.libtorch/site`) and the benchmarks' packages
/// (`.bench/site`, from `bash benches/baseline/setup.sh`) on its path.
pub fn python(root: &std::path::Path) -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    let path = format!(
        "{}:{}",
        root.join(".libtorch/site").display(),
        root.join(".bench/site").display()
    );
    cmd.env("PYTHONPATH", path);
    cmd
}

/// Whether [`python`] imports `modules`; when not, says the test is skipped, or fails under
/// `TITAN_REQUIRE_TRANSFORMERS=1` (CI, which installs them).
pub fn have_python(root: &std::path::Path, modules: &str) -> Result<bool> {
    let probe = python(root)
        .args(["-c", &format!("import {modules}")])
        .output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return Ok(true);
    }
    let why = format!(
        "Python importing {modules} is not here (run `bash .cargo/libtorch.sh` and `bash \
         benches/baseline/setup.sh`)"
    );
    anyhow::ensure!(
        std::env::var("TITAN_REQUIRE_TRANSFORMERS").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("skipped: {why}");
    Ok(false)
}

/// Sends SIGTERM to `child` once its run has logged step 2 in `out`'s `metrics.jsonl` (within
/// `limit`), and waits for it: a run that a preemption stops while it trains.
pub fn sigterm_once_training(
    child: std::process::Child,
    out: &std::path::Path,
    limit: std::time::Duration,
) -> Result<std::process::Output> {
    signal_once_training(child, out, "TERM", limit)
}

/// Sends `signal` (`kill`'s name: `TERM`, `INT`, `KILL`) to `child` alone once its run has
/// logged step 2 in `out`'s `metrics.jsonl` (within `limit`), and waits for it.
pub fn signal_once_training(
    child: std::process::Child,
    out: &std::path::Path,
    signal: &str,
    limit: std::time::Duration,
) -> Result<std::process::Output> {
    let deadline = std::time::Instant::now() + limit;
    while !std::fs::read_to_string(out.join("metrics.jsonl"))
        .is_ok_and(|m| m.contains("\"step\":2"))
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no step within {}s",
            limit.as_secs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    anyhow::ensure!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()?
            .success()
    );
    Ok(child.wait_with_output()?)
}
