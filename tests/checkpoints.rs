//! Checkpoints through an experiment binary's `run`: a run resumed from its step-N checkpoint
//! logs, bit for bit, the losses and gradient norms of the run that went on (packed and padded
//! layouts, with gradient accumulation); a run whose checkpoints reach its last step is
//! complete; a checkpoint that does not fit the run (model, data) is refused naming the setting,
//! and one whose weights do not fit the model naming the weight.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use titan::tch::Tensor;

mod common;

#[allow(dead_code)]
#[path = "../experiments/tiny_llama.rs"]
mod tiny_llama;

/// tiny_llama shrunk for a test (`common::run_shrunk`), `steps` steps, a checkpoint every 3
/// and a log line every step, in `dir`, with `extra` flags.
fn run_for(steps: u64, dir: &Path, extra: &[&str]) -> titan::Result<()> {
    let flags = [&["--log-every", "1", "--checkpoint-every", "3"][..], extra].concat();
    common::run_shrunk::<tiny_llama::TinyLlama>(dir, steps, &flags)
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
    // The resumed run logs steps 4 to 6 as the first run logged them, each step once: the
    // stopped run's records after its checkpoint are moved aside, not lost.
    ensure!(all.len() == 6, "{all:?}");
    ensure!(
        all[3..] == first[3..],
        "resumed {:?}\nstraight {:?}",
        &all[3..],
        &first[3..]
    );
    let aside = std::fs::read_to_string(dir.path().join("metrics.superseded.jsonl"))?;
    let moved: Vec<u64> = aside
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)?["step"]
                .as_u64()
                .context("step")
        })
        .collect::<Result<_>>()?;
    ensure!(
        moved.iter().all(|&s| s > 3) && moved.contains(&6),
        "{moved:?}"
    );
    // TensorBoard drops the stopped run's points from step 4 on, as the resumed file says.
    let mut purges = Vec::new();
    for file in std::fs::read_dir(dir.path().join("tb"))? {
        purges.extend(titan::metrics::read_purge_steps(&file?.path())?);
    }
    ensure!(purges == [4], "{purges:?}");
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

/// Flips one byte in the middle of `file` (bit rot: same size, another checksum).
fn flip_a_byte(file: &Path) -> Result<()> {
    let mut bytes = std::fs::read(file)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(file, bytes)?;
    Ok(())
}

/// A damaged latest checkpoint gives way to the one before it: the rerun resumes there, logs
/// the steps after it as the first run did, and keeps the damaged one aside; with every
/// checkpoint damaged, the run is refused rather than started over.
#[test]
fn a_damaged_latest_checkpoint_gives_way_to_the_one_before() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run(dir.path(), &[])?;
    let first = steps(dir.path())?;
    let checkpoints = dir.path().join("checkpoints");
    flip_a_byte(&checkpoints.join("step-6/model.safetensors"))?;
    // The same command resumes after step 3 (it would have said the run was complete had it
    // taken the damaged step 6) and logs steps 4 to 6 as the first run did.
    run(dir.path(), &[])?;
    let all = steps(dir.path())?;
    ensure!(all == first, "resumed {all:?}\nfirst {first:?}");
    let aside = std::fs::read_to_string(dir.path().join("metrics.superseded.jsonl"))?;
    ensure!(
        aside.lines().count() >= 3,
        "steps 4 to 6 were logged again: {aside}"
    );
    ensure!(
        checkpoints
            .join("step-6.damaged/model.safetensors")
            .is_file()
    );
    ensure!(
        checkpoints.join("step-6/manifest.json").is_file(),
        "saved again"
    );
    // Every checkpoint damaged: refused, naming the newest and what is wrong with it.
    for step in ["step-3", "step-6"] {
        flip_a_byte(&checkpoints.join(step).join("model.safetensors"))?;
    }
    let err = run(dir.path(), &[])
        .expect_err("nothing to resume")
        .to_string();
    ensure!(
        err.contains("none can be")
            && err.contains("2 damaged")
            && err.contains("step-6 (")
            && err.contains("checksum"),
        "{err}"
    );
    ensure!(checkpoints.join("step-6").is_dir(), "left as they were");
    Ok(())
}

#[test]
fn a_complete_run_does_nothing_and_a_misfit_checkpoint_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run(dir.path(), &[])?;
    let before = std::fs::read_to_string(dir.path().join("metrics.jsonl"))?;
    // Its checkpoints reach step 6: rerunning the command trains nothing.
    run(dir.path(), &[])?;
    ensure!(std::fs::read_to_string(dir.path().join("metrics.jsonl"))? == before);
    // Two more steps resume from step 6 into the same directory, accumulating twice as many
    // micro-batches a step (a resume may change that, e.g. on fewer ranks).
    run_for(8, dir.path(), &["--grad-accum-steps", "2"])?;
    let all = steps(dir.path())?;
    ensure!(
        all.iter().map(|s| s.0).collect::<Vec<_>>() == [1, 2, 3, 4, 5, 6, 7, 8],
        "{all:?}"
    );
    // A wider model, or other data, does not fit the checkpoint: refused before anything is
    // loaded, naming the setting and both values.
    let err = run_for(10, dir.path(), &["--set", "llama.intermediate_size=1024"])
        .expect_err("a misfit checkpoint")
        .to_string();
    ensure!(
        err.contains("`llama.intermediate_size` is 768 there and 1024 here")
            && err.contains("--output-dir"),
        "{err}"
    );
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "A fox ran.\n<|endoftext|>\nA hen sat.\n".repeat(50))?;
    let other = other.to_str().context("utf8 path")?;
    let err = run_for(10, dir.path(), &["--data", other])
        .expect_err("other data")
        .to_string();
    ensure!(err.contains("`training.data` is unset there"), "{err}");
    // Resuming behind the directory's latest checkpoint would mix two runs: refused.
    let older = dir.path().join("checkpoints/step-6");
    let older = older.to_str().context("utf8 path")?;
    let err = run_for(10, dir.path(), &["--resume-from", older])
        .expect_err("behind the latest")
        .to_string();
    ensure!(
        err.contains("behind the latest checkpoint") && err.contains("step 8"),
        "{err}"
    );
    // Nothing of the old run was touched.
    ensure!(dir.path().join("checkpoints/step-8").is_dir());
    ensure!(steps(dir.path())?.len() == 8);
    Ok(())
}

/// A run and its data moved (another machine, another mount): the same command with the new
/// paths resumes where it left off, logging what the run would have; the files changed
/// instead is refused.
#[test]
fn a_run_whose_data_moved_resumes_and_changed_data_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let here = dir.path().join("here");
    std::fs::create_dir_all(here.join("web/sub"))?;
    std::fs::write(
        here.join("web/a.txt"),
        "A fox ran far.\n<|endoftext|>\nA hen sat still.\n<|endoftext|>\n".repeat(40),
    )?;
    std::fs::write(
        here.join("web/sub/b.txt"),
        "The moon rose.\n<|endoftext|>\nThe sea was calm.\n<|endoftext|>\n".repeat(40),
    )?;
    let data = |root: &Path| root.join("web").display().to_string();
    let (out, moved_out) = (dir.path().join("run"), dir.path().join("moved-run"));
    run(&out, &["--data", &data(&here)])?;
    let first = steps(&out)?;
    std::fs::remove_dir_all(out.join("checkpoints/step-6"))?;
    // Both move: the data directory and the run's.
    let there = dir.path().join("there");
    std::fs::rename(&here, &there)?;
    std::fs::rename(&out, &moved_out)?;
    run(&moved_out, &["--data", &data(&there)])?;
    let all = steps(&moved_out)?;
    ensure!(
        all.len() == 6 && all[3..] == first[3..],
        "moved {all:?}\nstraight {first:?}"
    );
    // A data file that changed is refused, naming what changed.
    let b = there.join("web/sub/b.txt");
    std::fs::write(&b, std::fs::read_to_string(&b)? + "One more.\n")?;
    let err = run_for(8, &moved_out, &["--data", &data(&there)])
        .expect_err("changed data")
        .to_string();
    ensure!(
        err.contains("other data") || err.contains("changed since"),
        "{err}"
    );
    Ok(())
}

/// Set while [`ExportsAlone`] exports: its loaders and optimizer then fail to build.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// An error while [`EXPORTING`]: what a component the export must not build runs first.
fn not_while_exporting(what: &str) -> titan::Result<()> {
    match EXPORTING.load(std::sync::atomic::Ordering::SeqCst) {
        true => Err(titan::Error::Unsupported(format!(
            "{what} built for an export"
        ))),
        false => Ok(()),
    }
}

mod exports_alone {
    use super::not_while_exporting;
    use titan::prelude::*;

    /// tiny_llama whose loaders and optimizer cannot be built while the test exports.
    #[experiment]
    pub struct ExportsAlone {
        #[config(TrainingConfig::tiny_titan())]
        training: TrainingConfig,
        #[config(LlamaConfig::tiny())]
        llama: LlamaConfig,
        #[config(BpeConfig::default())]
        bpe: BpeConfig,
        #[config(AdamWConfig::default())]
        adamw: AdamWConfig,
        #[config(WarmupConfig::default())]
        schedule: WarmupConfig,
        #[config(DatasetConfig::default())]
        dataset: DatasetConfig,
        #[config(ParallelConfig::default())]
        parallelism: ParallelConfig,
        #[build(C10dEnv::from_env(training.device()?, &parallelism)?)]
        dist: C10dEnv,
        #[build(ParallelDims::with_config(&dist, &parallelism, training.device()?)?)]
        dims: ParallelDims,
        #[build(Corpus::new(None, None, &dataset, StoryConfig::for_tokens(training.seed, training.tokens()))?)]
        corpus: Corpus,
        #[build(BpeTokenizer::train_or_load(&bpe.in_dir(&training.output_dir()), corpus.train.sample_of(dataset.tokenizer_sample))?)]
        tokenizer: BpeTokenizer,
        #[build(Llama::new(llama.with_tokenizer(&tokenizer), dims.device())?)]
        model: Llama,
        #[build({
            not_while_exporting("train_data")?;
            dataset.train_loader(&dims, &corpus.train, &tokenizer, training.batching())?
        })]
        train_data: TokenLoader<Documents, BpeTokenizer, HfConvention>,
        #[build({
            not_while_exporting("val_data")?;
            dataset.val_loader(&dims, &corpus.val, &tokenizer, training.batching())?
        })]
        val_data: TokenLoader<Documents, BpeTokenizer, HfConvention>,
        #[build(CausalLmLoss)]
        loss: CausalLmLoss,
        #[build({ not_while_exporting("optimizer")?; AdamW::new(model.parameters(), adamw)? })]
        optimizer: AdamW,
        #[build(Warmup::new(&optimizer, schedule)?)]
        lr_scheduler: Warmup<AdamW>,
    }
}

/// `--export-hf` builds the model, the tokenizer and what they need, never a loader or the
/// optimizer (a corpus being read, optimizer state allocated, for nothing).
#[test]
fn export_hf_builds_no_loader_or_optimizer() -> Result<()> {
    use exports_alone::ExportsAlone;
    let dir = tempfile::tempdir()?;
    let flags = ["--checkpoint-every", "2"];
    common::run_shrunk::<ExportsAlone>(dir.path(), 2, &flags)?;
    let to = dir.path().join("export");
    let to = to.to_str().context("utf8 path")?;
    EXPORTING.store(true, std::sync::atomic::Ordering::SeqCst);
    let exported = common::run_shrunk::<ExportsAlone>(
        dir.path(),
        2,
        &[&flags[..], &["--export-hf", to]].concat(),
    );
    // Training now fails at the loaders: the guard is live.
    let training = common::run_shrunk::<ExportsAlone>(&dir.path().join("new"), 2, &flags);
    EXPORTING.store(false, std::sync::atomic::Ordering::SeqCst);
    exported?;
    let err = training.expect_err("loaders refused").to_string();
    ensure!(err.contains("train_data built for an export"), "{err}");
    ensure!(same_tensors(
        &tensors(&Path::new(to).join("model.safetensors"))?,
        &tensors(&dir.path().join("checkpoints/step-2/model.safetensors"))?
    ));
    Ok(())
}

/// A dataloader whose position counts batches (of two rows, whatever the run's batch size):
/// it cannot resume at another batch size, and does not say it can.
mod counting {
    use titan::data::{HfBatch, HfLabels, TokenIds};
    use titan::prelude::*;
    use titan::tch::{Device, Kind, Tensor};

    /// Rows of `0, 1, 2, …` modulo 32, each batch starting one further.
    pub struct Counting(pub i64);

    impl Dataloader for Counting {
        type Batch = HfBatch;
        type State = i64;
        fn next_batch(&mut self) -> titan::Result<HfBatch> {
            let ids = Tensor::f_arange_start(self.0, self.0 + 32, (Kind::Int64, Device::Cpu))?
                .f_remainder(32)?
                .f_view([2, 16])?;
            self.0 += 1;
            Ok(HfBatch {
                input_ids: TokenIds(ids.shallow_clone()),
                labels: HfLabels(ids),
            })
        }
        fn state(&self) -> i64 {
            self.0
        }
        fn load_state(&mut self, state: i64) -> titan::Result<()> {
            self.0 = state;
            Ok(())
        }
        fn epoch(&self) -> u64 {
            0
        }
    }

    /// A tiny Llama on counting sequences.
    #[experiment]
    pub struct Counter {
        #[config(TrainingConfig { samples: 0, device: "cpu".into(), ..TrainingConfig::default() })]
        training: TrainingConfig,
        #[build(Llama::new(LlamaConfig {
            vocab_size: 32, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
            num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 32,
            ..LlamaConfig::tiny()
        }, Device::Cpu)?)]
        model: Llama,
        #[build(Counting(0))]
        train_data: Counting,
        #[build(CausalLmLoss)]
        loss: CausalLmLoss,
        #[build(AdamW::new(model.parameters(), AdamWConfig::default())?)]
        optimizer: AdamW,
        #[build(Warmup::new(&optimizer, WarmupConfig { warmup_steps: 1, total_steps: 4, ..WarmupConfig::default() })?)]
        lr_scheduler: Warmup<AdamW>,
    }
}

/// Copies directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        match entry.file_type()?.is_dir() {
            true => copy_dir(&entry.path(), &target)?,
            false => {
                std::fs::copy(entry.path(), target)?;
            }
        }
    }
    Ok(())
}

/// A resume may change the batch size (a smaller device: fewer rows, more micro-batches a
/// step): titan's loader serves the rows that would have followed, so the steps see the same
/// tokens; a dataloader that does not say it can is refused, naming it.
#[test]
fn a_resume_may_change_the_batch_size_where_the_dataloader_can() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (straight, halved) = (dir.path().join("straight"), dir.path().join("halved"));
    run(&straight, &[])?;
    // A copy of the run as if stopped after step 3's checkpoint (a copy, not a second run:
    // tests in one process share torch's generator, so two runs may start from other weights).
    let stopped_after_3 = |dir: &Path| -> Result<()> {
        copy_dir(&straight, dir)?;
        Ok(std::fs::remove_dir_all(dir.join("checkpoints/step-6"))?)
    };
    stopped_after_3(&halved)?;
    // Steps 4 to 6 in micro-batches of one row, two a step: the same rows a step.
    let one_row = ["--set", "training.batch_size=1"];
    run(
        &halved,
        &[&one_row[..], &["--grad-accum-steps", "2"]].concat(),
    )?;
    let (a, b) = (steps(&straight)?, steps(&halved)?);
    ensure!(a.len() == 6 && b.len() == 6, "{a:?}\n{b:?}");
    for ((step, loss_a, norm_a), (_, loss_b, norm_b)) in a.iter().zip(&b).skip(3) {
        for (x, y) in [(loss_a, loss_b), (norm_a, norm_b)] {
            let (x, y): (f64, f64) = (x.parse()?, y.parse()?);
            ensure!((x - y).abs() <= 1e-4 * x.abs(), "step {step}: {x} vs {y}");
        }
    }
    // The loss differs once the rows do: a step of one row is not a step of two.
    stopped_after_3(&dir.path().join("one"))?;
    run(&dir.path().join("one"), &one_row)?;
    let c = steps(&dir.path().join("one"))?;
    ensure!(c[3].1 != a[3].1, "{c:?}");

    // A dataloader whose position counts batches: refused, naming it and the way out.
    let counter = dir.path().join("counter");
    let out = counter.display().to_string();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    std::fs::write(&a, "A fox.\n")?;
    std::fs::write(&b, "A hen.\n")?;
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let args = |steps: &'static str, batch: &'static str, data: &str| {
        let (out, data) = (out.clone(), data.to_string());
        move || {
            let args = [
                "x",
                "--steps",
                steps,
                "--checkpoint-every",
                "2",
                "--batch-size",
                batch,
                "--output-dir",
                &out,
                "--data",
                &data,
            ];
            titan::experiment::run::<counting::Counter>(titan::cli::TrainArgs::try_parse_from(
                args,
            )?)
        }
    };
    args("2", "2", &a)()?;
    // Nor does it check its files: data named by another path is refused, not trusted.
    let err = args("4", "2", &b)().expect_err("data moved").to_string();
    ensure!(
        err.contains("Counting") && err.contains(&format!("--data {a}")),
        "{err}"
    );
    let err = args("4", "1", &a)()
        .expect_err("counting batches")
        .to_string();
    ensure!(
        err.contains("batch_size = 2")
            && err.contains("Counting")
            && err.contains("--batch-size 2")
            && err.contains("Dataloader::rebatches"),
        "{err}"
    );
    Ok(())
}

/// A resume may lengthen the rows (a longer context for the rest of a run): titan's loader lays
/// the tokens it had not yet used into rows of the new length, so the run goes on from the
/// checkpoint's step with twice the tokens a row; a dataloader that does not say it can is
/// refused, naming it and the way out.
#[test]
fn a_resume_may_change_the_row_length_where_the_dataloader_can() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (straight, longer) = (dir.path().join("straight"), dir.path().join("longer"));
    run(&straight, &[])?;
    copy_dir(&straight, &longer)?;
    std::fs::remove_dir_all(longer.join("checkpoints/step-6"))?;
    run(&longer, &["--set", "training.seq_len=128"])?;
    let (a, b) = (steps(&straight)?, steps(&longer)?);
    ensure!(a.len() == 6 && b.len() == 6, "{a:?}\n{b:?}");
    ensure!(
        a[..3] == b[..3],
        "steps 1 to 3 are the checkpoint's: {a:?}\n{b:?}"
    );
    ensure!(
        a[3] != b[3],
        "step 4 trains on rows of 128 tokens: {a:?}\n{b:?}"
    );
    // The new length is the run's from here: its last checkpoint records it.
    let state = std::fs::read_to_string(longer.join("checkpoints/step-6/train_state.json"))?;
    ensure!(state.contains("\"seq_len\": 128"), "{state}");

    // A dataloader whose position may count rows of a length: refused.
    let out = dir.path().join("counter").display().to_string();
    let counter = |steps: &str, extra: &[&str]| {
        let mut args = vec!["x", "--steps", steps, "--checkpoint-every", "2"];
        args.extend_from_slice(&["--batch-size", "2", "--output-dir", &out]);
        args.extend_from_slice(extra);
        titan::cli::TrainArgs::try_parse_from(args)
            .map_err(anyhow::Error::from)
            .and_then(|a| Ok(titan::experiment::run::<counting::Counter>(a)?))
    };
    counter("2", &[])?;
    let err = counter("4", &["--set", "training.seq_len=16"])
        .expect_err("rows of a fixed length")
        .to_string();
    ensure!(
        err.contains("seq_len = 512")
            && err.contains("Counting")
            && err.contains("--set training.seq_len=512")
            && err.contains("Dataloader::reshapes"),
        "{err}"
    );
    Ok(())
}

/// The tensors of the safetensors file `path`, by name.
fn tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(path)
        .with_context(|| path.display().to_string())?
        .into_iter()
        .collect())
}

/// Whether two sets of named tensors are equal, name for name and bit for bit.
fn same_tensors(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb))
}

#[test]
fn export_hf_writes_any_checkpoint_and_init_from_hf_starts_a_run_from_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a");
    run(&a, &[])?;
    let path = |p: &Path| p.to_str().map(str::to_string).context("utf8 path");
    let step = |n: u64| a.join(format!("checkpoints/step-{n}/model.safetensors"));
    // The output directory's latest checkpoint, as the run's own end-of-run export has it.
    let six = a.join("six");
    run(&a, &["--export-hf", &path(&six)?])?;
    let exported = tensors(&six.join("model.safetensors"))?;
    ensure!(same_tensors(&exported, &tensors(&step(6))?));
    ensure!(same_tensors(
        &exported,
        &tensors(&a.join("hf/model.safetensors"))?
    ));
    for file in ["config.json", "generation_config.json", "tokenizer.json"] {
        ensure!(six.join(file).is_file(), "{file} is missing");
    }
    // A run stopped between its last checkpoint and the export gets `hf/` when rerun.
    std::fs::remove_dir_all(a.join("hf"))?;
    run(&a, &[])?;
    ensure!(same_tensors(
        &exported,
        &tensors(&a.join("hf/model.safetensors"))?
    ));
    // Any checkpoint, named with --resume-from.
    let three = a.join("three");
    let from = path(&a.join("checkpoints/step-3"))?;
    run(&a, &["--resume-from", &from, "--export-hf", &path(&three)?])?;
    let early = tensors(&three.join("model.safetensors"))?;
    ensure!(same_tensors(&early, &tensors(&step(3))?));
    ensure!(!same_tensors(&early, &exported));
    // An `hf/` of an earlier end (a longer run stopped before its export replaced it) is
    // exported again when the complete run is rerun.
    std::fs::remove_dir_all(a.join("hf"))?;
    std::fs::rename(&three, a.join("hf"))?;
    ensure!(titan::checkpoint::exported_step(&a.join("hf")) == Some(3));
    run(&a, &[])?;
    ensure!(titan::checkpoint::exported_step(&a.join("hf")) == Some(6));
    ensure!(same_tensors(
        &exported,
        &tensors(&a.join("hf/model.safetensors"))?
    ));
    // The run's own `hf/` by an older titan (no stamp) is still its to replace.
    std::fs::remove_file(a.join("hf").join(titan::checkpoint::EXPORT_STAMP))?;
    run(&a, &["--export-hf", &path(&a.join("hf"))?])?;
    ensure!(titan::checkpoint::exported_step(&a.join("hf")) == Some(6));
    // A directory that holds anything but an export is never replaced: here, the run's own.
    let err = run(&a, &["--export-hf", &path(&a)?])
        .expect_err("the output directory")
        .to_string();
    ensure!(err.contains("titan did not export"), "{err}");
    ensure!(step(6).is_file() && a.join("metrics.jsonl").is_file());
    // Nor a model of the user's with an export's file names (`save_pretrained`'s), nor a file.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs)?;
    std::fs::write(theirs.join("config.json"), r#"{"model_type": "mistral"}"#)?;
    std::fs::write(theirs.join("model.safetensors"), "their weights")?;
    let err = run(&a, &["--export-hf", &path(&theirs)?])
        .expect_err("their model")
        .to_string();
    ensure!(err.contains("titan did not export"), "{err}");
    ensure!(std::fs::read_to_string(theirs.join("model.safetensors"))? == "their weights");
    let file = dir.path().join("file");
    std::fs::write(&file, "")?;
    let err = run(&a, &["--export-hf", &path(&file)?])
        .expect_err("a file")
        .to_string();
    ensure!(err.contains("is a file"), "{err}");
    // A directory without checkpoints has nothing to export.
    let empty = dir.path().join("empty");
    let err = run(&empty, &["--export-hf", &path(&dir.path().join("x"))?])
        .expect_err("no checkpoint")
        .to_string();
    ensure!(err.contains("holds no checkpoint to export"), "{err}");
    ensure!(!dir.path().join("x").exists());

    // A new run from the export: with a learning rate of 0 its weights stay the export's.
    let b = dir.path().join("b");
    let init = path(&a.join("hf"))?;
    run_for(3, &b, &["--init-from-hf", &init, "--set", "adamw.lr=0"])?;
    ensure!(same_tensors(
        &tensors(&b.join("checkpoints/step-3/model.safetensors"))?,
        &exported
    ));
    // A model that does not fit the directory's config is refused naming the field.
    let c = dir.path().join("c");
    let err = run_for(
        3,
        &c,
        &[
            "--init-from-hf",
            &init,
            "--set",
            "llama.num_hidden_layers=2",
        ],
    )
    .expect_err("a misfit")
    .to_string();
    ensure!(
        err.contains("`num_hidden_layers` is 1 there and 2"),
        "{err}"
    );
    ensure!(!c.join("checkpoints").exists());
    // A run whose tokenizer is another one (trained on another sample) is refused before a
    // weight loads, whatever the sizes: the embedding's rows would mean other tokens.
    let d = dir.path().join("d");
    let err = run_for(
        3,
        &d,
        &[
            "--init-from-hf",
            &init,
            "--set",
            "dataset.tokenizer_sample=150",
        ],
    )
    .expect_err("another tokenizer")
    .to_string();
    ensure!(
        err.contains("training.init_from_hf") && err.contains("another tokenizer than the run's"),
        "{err}"
    );
    ensure!(!d.join("checkpoints").exists());
    Ok(())
}

/// A one-block Llama of width `hidden` over 50 token ids.
fn small_llama(hidden: i64) -> titan::Result<titan::Llama> {
    titan::Llama::new(
        titan::LlamaConfig {
            vocab_size: 50,
            hidden_size: hidden,
            intermediate_size: 64,
            num_hidden_layers: 1,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 32,
            ..titan::LlamaConfig::tiny()
        },
        titan::tch::Device::Cpu,
    )
}

/// Trains `model` under `loss` with `trainer` (the trainer alone: its checkpoints hold no
/// configuration) on a repeating token stream with AdamW and the default warmup; the last
/// logged loss.
fn train_small<L>(
    model: &mut titan::Llama,
    loss: &mut L,
    trainer: &mut titan::Trainer,
) -> titan::Result<f64>
where
    L: titan::Loss<titan::HfLabels> + titan::Stateful,
{
    use titan::Model;
    let dims = titan::ParallelDims::new(&titan::LocalEnv::single(), titan::tch::Device::Cpu)?;
    let tokens: Vec<u32> = (0..2048).map(|i| (i * 7 % 50) as u32).collect();
    let mut data = titan::data::PackedLoader::new(&dims, tokens, 16, 2, 0, true)?;
    let mut opt = titan::AdamW::new(model.parameters(), titan::AdamWConfig::default())?;
    let mut sched = titan::Warmup::new(&opt, titan::WarmupConfig::default())?;
    let summary = trainer.run(
        titan::experiment::wire(model)
            .train_data(&mut data)
            .loss(loss)
            .optimizer(&mut opt)
            .lr_scheduler(&mut sched),
    )?;
    Ok(summary.last_loss)
}

#[test]
fn weights_of_another_shape_are_refused_naming_the_weight() -> Result<()> {
    use titan::checkpoint::{Checkpoint, CheckpointStore};
    use titan::trainer::Checkpointing;
    use titan::{CausalLmLoss, Trainer};

    let dir = tempfile::tempdir()?;
    let settings = titan::TrainingConfig {
        steps: 2,
        ..titan::TrainingConfig::default()
    };
    let store = CheckpointStore::new(dir.path(), "shapes", 1)?;
    let mut saving = Trainer::new(settings.clone())
        .quiet()
        .with_checkpoints(Checkpointing::new(store, 2, Vec::new())?);
    train_small(&mut small_llama(32)?, &mut CausalLmLoss, &mut saving)?;
    let checkpoint = Checkpoint::open(&dir.path().join("checkpoints/step-2"), "shapes")?;
    let mut wider = Trainer::new(titan::TrainingConfig {
        steps: 4,
        ..settings
    })
    .quiet()
    .resume_from(checkpoint);
    let err = train_small(&mut small_llama(48)?, &mut CausalLmLoss, &mut wider)
        .expect_err("misfit")
        .to_string();
    ensure!(
        err.contains("weight `lm_head.weight` has shape [50, 32] there and [50, 48] in the model"),
        "{err}"
    );
    Ok(())
}

/// A loss whose weight grows with the batches it has scored: its count is state that a
/// resumed run must get back.
struct Ramp {
    calls: std::cell::Cell<u64>,
}

impl titan::Stateful for Ramp {
    fn state_dict(&self) -> titan::Result<titan::StateDict> {
        titan::StateDict::of_value(&self.calls.get())
    }
    fn load_state_dict(&mut self, state: titan::StateDict) -> titan::Result<()> {
        self.calls.set(state.value_as("Ramp")?);
        Ok(())
    }
}

impl titan::Loss<titan::HfLabels> for Ramp {
    fn loss_sum(
        &self,
        logits: &Tensor,
        labels: &titan::HfLabels,
    ) -> titan::Result<(Tensor, Tensor)> {
        self.calls.set(self.calls.get() + 1);
        let (sum, count) = titan::CausalLmLoss.loss_sum(logits, labels)?;
        Ok((sum * (1.0 + self.calls.get() as f64 / 4.0), count))
    }
}

#[test]
fn a_stateful_component_s_state_is_saved_and_restored() -> Result<()> {
    use titan::Trainer;
    use titan::checkpoint::{Checkpoint, CheckpointStore};
    use titan::trainer::Checkpointing;

    let dir = tempfile::tempdir()?;
    // A fresh model (seed 0) and a fresh `Ramp`: the last step's loss.
    let train = |trainer: &mut Trainer| -> titan::Result<f64> {
        titan::device::seed_everything(0);
        let mut loss = Ramp {
            calls: std::cell::Cell::new(0),
        };
        train_small(&mut small_llama(32)?, &mut loss, trainer)
    };
    let settings = titan::TrainingConfig {
        steps: 4,
        log_every: 1,
        ..titan::TrainingConfig::default()
    };
    let store = CheckpointStore::new(dir.path(), "ramp", 2)?;
    let mut straight = Trainer::new(settings.clone())
        .quiet()
        .with_checkpoints(Checkpointing::new(store, 2, Vec::new())?);
    let last = train(&mut straight)?;
    let checkpoint = Checkpoint::open(&dir.path().join("checkpoints/step-2"), "ramp")?;
    let state: Value = serde_json::from_slice(&checkpoint.read("train_state.json")?)?;
    ensure!(state["components"]["loss"] == 2, "{state}");
    ensure!(state["components"]["lr_scheduler"]["steps"] == 2, "{state}");
    let mut resumed = Trainer::new(settings).quiet().resume_from(checkpoint);
    let again = train(&mut resumed)?;
    ensure!(
        last.to_bits() == again.to_bits(),
        "step 4's loss: {last} straight, {again} resumed"
    );
    Ok(())
}

/// A run without checkpoints in a directory that holds an earlier run's is refused: it would
/// start over from step 0 beside them, and its end would replace their `hf/` export.
#[test]
fn a_run_without_checkpoints_does_not_start_over_beside_a_runs_checkpoints() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    run_for(2, &out, &[])?;
    let err = run_for(3, &out, &["--set", "training.checkpoint_every=0"])
        .expect_err("checkpoints there")
        .to_string();
    ensure!(
        err.contains("holds a run's checkpoints (up to step 2)") && err.contains("--output-dir"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_tokenizer_trained_on_other_data_is_refused_not_reused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text.repeat(60))?;
        path.to_str().map(str::to_string).context("utf8 path")
    };
    let a = write(
        "a.txt",
        "A fox ran far.\n<|endoftext|>\nA hen sat still.\n<|endoftext|>\n",
    )?;
    let b = write(
        "b.txt",
        "The moon rose.\n<|endoftext|>\nThe sea was calm.\n<|endoftext|>\n",
    )?;
    let out = dir.path().join("run");
    // Without checkpoints nothing else stops a second run in the same directory.
    let no_checkpoints = ["--set", "training.checkpoint_every=0"];
    run_for(
        2,
        &out,
        &[&["--data", a.as_str()][..], &no_checkpoints[..]].concat(),
    )?;
    ensure!(out.join("tokenizer.fingerprint.json").is_file());
    run_for(
        2,
        &out,
        &[&["--data", a.as_str()][..], &no_checkpoints[..]].concat(),
    )?;
    let err = run_for(
        2,
        &out,
        &[&["--data", b.as_str()][..], &no_checkpoints[..]].concat(),
    )
    .expect_err("other data")
    .to_string();
    ensure!(
        err.contains("tokenizer.json was trained on other data or settings")
            && err.contains("b.txt")
            && err.contains("--output-dir"),
        "{err}"
    );
    Ok(())
}

/// A checkpoint records the identity of its tokenizer: a resume, or an export, with another
/// one (here a `tokenizer.json` swapped in without its fingerprint) is refused by name. It also
/// holds the tokenizer's files, which the error points at, and with which the resume goes on.
#[test]
fn a_resume_or_export_with_another_tokenizer_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&a, &[])?;
    // Another tokenizer of the same vocabulary size: trained on fewer stories.
    run_for(1, &b, &["--set", "dataset.tokenizer_sample=100"])?;
    std::fs::copy(b.join("tokenizer.json"), a.join("tokenizer.json"))?;
    std::fs::remove_file(a.join("tokenizer.fingerprint.json"))?;
    std::fs::remove_dir_all(a.join("checkpoints/step-6"))?;
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl"))?;
    let err = run(&a, &[]).expect_err("another tokenizer").to_string();
    ensure!(
        err.contains("step-3") && err.contains("another tokenizer"),
        "{err}"
    );
    // A refused resume touches nothing of the old run: its steps 4 to 6 stay logged.
    ensure!(std::fs::read_to_string(a.join("metrics.jsonl"))? == metrics);
    ensure!(!a.join("metrics.superseded.jsonl").exists());
    let out = dir.path().join("out").display().to_string();
    let err = run(&a, &["--export-hf", &out])
        .expect_err("another tokenizer")
        .to_string();
    ensure!(err.contains("another tokenizer"), "{err}");
    // The checkpoint holds the tokenizer it was trained with, and says so: put back, the run
    // resumes.
    let kept = a.join("checkpoints/step-3/tokenizer.json");
    ensure!(
        err.contains(&kept.display().to_string()),
        "the error names the checkpoint's copy: {err}"
    );
    std::fs::copy(&kept, a.join("tokenizer.json"))?;
    run(&a, &[])?;
    Ok(())
}

/// A run that ends on skipped non-finite steps (it diverged) is an error with no export, also
/// when its command is rerun and finds the run complete; `--export-hf` of it, asked for by name,
/// still writes it.
#[test]
fn a_diverged_run_is_not_exported_even_when_rerun() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let diverge = ["--set", "adamw.lr=1e30"];
    for attempt in ["the run", "its rerun"] {
        let err = run_for(4, &out, &diverge)
            .expect_err("diverged")
            .to_string();
        ensure!(err.contains("diverged"), "{attempt}: {err}");
        ensure!(!out.join("hf").exists(), "{attempt} exported");
    }
    ensure!(out.join("checkpoints/step-4").is_dir());
    let named = dir.path().join("named");
    let named_flag = named.to_str().context("utf8 path")?;
    run_for(
        4,
        &out,
        &[&diverge[..], &["--export-hf", named_flag]].concat(),
    )?;
    ensure!(named.join("model.safetensors").is_file());
    Ok(())
}
