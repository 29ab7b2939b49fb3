//! The CLI and output contract of an experiment binary: flags, `metrics.jsonl`, samples.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

fn run(args: &[&str]) -> Result<std::process::Output> {
    let out = Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
        .args(args)
        .output()
        .context("running tiny_llama")?;
    Ok(out)
}

/// One quick step (batch 1, CPU, no samples) on `data` (the built-in stories when `None`).
fn one_step(data: Option<&Path>, out_dir: &Path) -> Result<std::process::Output> {
    let mut args = vec![
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--samples",
        "0",
    ];
    if let Some(data) = data {
        args.extend(["--data", data.to_str().context("utf8 path")?]);
    }
    args.extend(["--output-dir", out_dir.to_str().context("utf8 path")?]);
    run(&args)
}

fn records(dir: &Path) -> Result<Vec<Value>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON line: {l}")))
        .collect()
}

fn stories(docs: usize) -> Vec<String> {
    (0..docs)
        .map(|i| {
            format!(
                "Once upon a time there was a cat number {i}. The cat liked to sit in the sun.\n\
                 One day the cat saw a bird. \"Hello, bird!\" said the cat. They became friends."
            )
        })
        .collect()
}

fn write_corpus(path: &Path, docs: usize) -> Result<()> {
    let text: String = stories(docs)
        .iter()
        .map(|d| format!("{d}\n<|endoftext|>\n"))
        .collect();
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

#[test]
fn trains_on_a_text_file_and_writes_the_metrics_contract() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("train.txt");
    write_corpus(&data, 300)?;
    let out_dir = dir.path().join("run");
    let out = run(&[
        "--data",
        data.to_str().context("utf8 path")?,
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--log-every",
        "1",
        "--samples",
        "1",
        "--output-dir",
        out_dir.to_str().context("utf8 path")?,
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "tiny_llama failed:\n{stderr}");
    let recs = records(&out_dir)?;
    let steps: Vec<&Value> = recs.iter().filter(|r| r.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 4, "one line per logged step: {recs:?}");
    for r in &steps {
        for key in [
            "step",
            "loss",
            "lr",
            "grad_norm",
            "tps",
            "tflops",
            "max_rss_gib",
        ] {
            assert!(r[key].is_number(), "{key} missing in {r}");
        }
    }
    let evals: Vec<&Value> = recs
        .iter()
        .filter(|r| r.get("val_loss").is_some())
        .collect();
    assert_eq!(evals.len(), 1, "evaluation at the end");
    assert_eq!(evals[0]["step"], 4);
    assert!(out_dir.join("tokenizer.json").exists());
    // TensorBoard: one event file whose records parse and hold the loss of every logged step.
    let tb: Vec<_> = std::fs::read_dir(out_dir.join("tb"))?.collect::<Result<_, _>>()?;
    assert_eq!(tb.len(), 1, "one event file");
    let events = titan::metrics::read_events(&tb[0].path())?;
    let losses = events
        .iter()
        .filter(|(_, tag, _)| tag == "loss_metrics/global_avg_loss")
        .count();
    assert_eq!(losses, 4, "{events:?}");
    assert!(
        events
            .iter()
            .any(|(step, tag, _)| *step == 4 && tag == "validation_metrics/loss")
    );
    assert!(
        stdout.contains("Once upon a time"),
        "samples missing:\n{stdout}"
    );
    Ok(())
}

#[test]
fn data_may_be_jsonl_or_parquet() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let docs = stories(300);
    let jsonl = dir.path().join("train.jsonl");
    let lines: String = docs
        .iter()
        .map(|d| format!("{}\n", serde_json::json!({ "text": d })))
        .collect();
    std::fs::write(&jsonl, lines)?;
    let parquet = dir.path().join("train.parquet");
    titan::data::parquet::write_documents(&parquet, "text", &docs, 100)?;
    for data in [&jsonl, &parquet] {
        let out_dir = dir.path().join("run");
        let out = one_step(Some(data.as_path()), &out_dir)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "tiny_llama failed on {}:\n{stderr}",
            data.display()
        );
        assert!(
            stderr.contains(data.to_str().unwrap_or_default()),
            "{stderr}"
        );
        std::fs::remove_dir_all(&out_dir)?;
    }
    Ok(())
}

#[test]
fn default_data_is_the_built_in_story_corpus() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = one_step(None, dir.path())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "tiny_llama failed:\n{stderr}");
    assert!(stderr.contains("built-in stories"), "{stderr}");
    assert!(
        records(dir.path())?
            .iter()
            .any(|r| r.get("val_loss").is_some())
    );
    Ok(())
}

#[test]
fn bad_flags_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("tpu");
    let out_dir = out_dir.to_str().context("utf8 path")?;
    let out = run(&["--device", "tpu", "--steps", "1", "--output-dir", out_dir])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tpu") && stderr.contains("device"),
        "{stderr}"
    );
    assert!(
        !Path::new(out_dir).exists(),
        "nothing is written for a bad device"
    );

    let missing = dir.path().join("nope.txt");
    let missing_out = dir.path().join("missing");
    let out = run(&[
        "--data",
        missing.to_str().context("utf8 path")?,
        "--steps",
        "1",
        "--output-dir",
        missing_out.to_str().context("utf8 path")?,
    ])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.txt") && stderr.contains("`training.data`"),
        "{stderr}"
    );

    // A setting out of range stops the run before anything is built or written.
    let out_dir = dir.path().join("run");
    let out = run(&[
        "--output-dir",
        out_dir.to_str().context("utf8 path")?,
        "--set",
        "training.seq_len=1",
    ])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("training.seq_len") && stderr.contains("at least 2"),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "nothing is written for a bad setting");

    // --pretokenize tokenizes data files: the built-in stories have none.
    let out = run(&[
        "--output-dir",
        out_dir.to_str().context("utf8 path")?,
        "--pretokenize",
    ])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--pretokenize") && stderr.contains("--data"),
        "{stderr}"
    );
    assert!(
        !out_dir.exists(),
        "nothing is written for --pretokenize without data"
    );
    Ok(())
}

#[test]
fn a_printed_config_read_back_reproduces_the_run_and_set_applies_on_top() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let printed = run(&["--print-config", "--steps", "7", "--set", "adamw.lr=3e-4"])?;
    ensure!(printed.status.success(), "{printed:?}");
    let toml = String::from_utf8(printed.stdout)?;
    // The experiment's name gives the output directory.
    ensure!(toml.contains("output_dir = \"runs/tiny_llama\""), "{toml}");
    let file = dir.path().join("run.toml");
    std::fs::write(&file, &toml)?;
    let file = file.to_str().context("utf8 path")?;
    let again = run(&["--config", file, "--print-config"])?;
    ensure!(again.status.success(), "{again:?}");
    ensure!(
        String::from_utf8(again.stdout)? == toml,
        "the file reproduces the settings"
    );
    // Flags and `--set` come after the file.
    let over = run(&["--config", file, "--steps", "9", "--print-config"])?;
    let over = String::from_utf8(over.stdout)?;
    ensure!(
        over.contains("steps = 9") && over.contains("lr = 0.0003"),
        "{over}"
    );
    // An unknown key in the file is an error naming it and the file.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[adamw]\nlearning_rate = 1e-3\n",
    )?;
    let bad = dir.path().join("bad.toml");
    let out = run(&[
        "--config",
        bad.to_str().context("utf8 path")?,
        "--print-config",
    ])?;
    let err = String::from_utf8(out.stderr)?;
    ensure!(
        !out.status.success() && err.contains("adamw.learning_rate") && err.contains("bad.toml"),
        "{err}"
    );
    Ok(())
}

/// SIGTERM (a cluster's preemption) stops a run at its next log point with a checkpoint of that
/// step, between the regular ones, and says so; the same command resumes from it.
#[test]
fn sigterm_stops_with_a_checkpoint_of_that_step_and_the_rerun_resumes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let out_flag = out.to_str().context("utf8 path")?.to_string();
    let args = [
        "--steps",
        "400",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--samples",
        "0",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1000",
        "--output-dir",
        &out_flag,
        "--set",
        "llama.num_hidden_layers=1",
        "--set",
        "training.seq_len=64",
        "--set",
        "dataset.tokenizer_sample=300",
        "--set",
        "training.eval_every=0",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stopped = common::sigterm_once_training(child, &out, std::time::Duration::from_secs(120))?;
    let err = String::from_utf8(stopped.stderr)?;
    ensure!(!stopped.status.success(), "{err}");
    ensure!(err.contains("stopped by SIGTERM after step"), "{err}");
    let checkpoints: Vec<String> = std::fs::read_dir(out.join("checkpoints"))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    ensure!(checkpoints.len() == 1, "{checkpoints:?}");
    let at: u64 = checkpoints[0].trim_start_matches("step-").parse()?;
    ensure!((2..400).contains(&at), "{checkpoints:?}");
    ensure!(err.contains(&format!("step-{at}")), "{err}");
    // The same command, shortened to end soon after, resumes from that step.
    let mut shorter = args.to_vec();
    let end = (at + 2).to_string();
    shorter[1] = &end;
    let rerun = run(&shorter)?;
    let err = String::from_utf8(rerun.stderr)?;
    ensure!(rerun.status.success(), "{err}");
    ensure!(err.contains(&format!("resuming after step {at}")), "{err}");
    Ok(())
}

#[test]
fn a_run_killed_mid_way_resumes_from_its_checkpoint_when_rerun() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let out_flag = out.to_str().context("utf8 path")?.to_string();
    let args = [
        "--steps",
        "40",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--samples",
        "0",
        "--checkpoint-every",
        "2",
        "--keep-checkpoints",
        "3",
        "--output-dir",
        &out_flag,
        "--set",
        "llama.num_hidden_layers=1",
        "--set",
        "training.seq_len=64",
        "--set",
        "dataset.tokenizer_sample=300",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Kill it (SIGKILL) once its first checkpoint is there, while it trains on.
    let first = out.join("checkpoints/step-2/manifest.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !first.exists() {
        ensure!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 2 minutes"
        );
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    let rerun = run(&args)?;
    let err = String::from_utf8(rerun.stderr)?;
    ensure!(rerun.status.success(), "{err}");
    ensure!(err.contains("resuming after step"), "{err}");
    let steps: Vec<u64> = records(&out)?
        .iter()
        .filter(|r| r.get("loss").is_some())
        .filter_map(|r| r["step"].as_u64())
        .collect();
    ensure!(steps.last() == Some(&40), "{steps:?}");
    ensure!(out.join("checkpoints/step-40/manifest.json").is_file());
    ensure!(
        std::fs::read_dir(out.join("checkpoints"))?.count() <= 3,
        "keeps the last 3"
    );
    Ok(())
}
