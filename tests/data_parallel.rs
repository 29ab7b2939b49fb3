//! Data parallelism over torch's c10d (Gloo, loopback): two ranks, each this test binary
//! started again with torchrun's variables, train exactly like one process with their global
//! batch, read disjoint rows, and a rank that fails stops the other with an error naming it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use titan::data::{Dataloader, HfLabels, PackedLoader};
use titan::experiment::wire;
use titan::tch::{Device, Tensor};
use titan::{
    AdamW, AdamWConfig, C10dEnv, CausalLmLoss, DistributedEnvironment, Loss, Model, ParallelDims,
    Trainer, TrainingConfig,
};

/// Set in a rank's environment: the test it runs, and where it writes.
const ROLE: &str = "TITAN_DP_TEST_ROLE";
const OUT: &str = "TITAN_DP_TEST_OUT";
/// Rows per rank and batch, steps.
const BATCH: usize = 2;
const STEPS: u64 = 4;

/// What a run composes data parallelism with: micro-batches per step, activation
/// checkpointing. Passed to the ranks in `TITAN_DP_TEST_SETUP`.
#[derive(Debug, Clone, Copy)]
struct Setup {
    accum: usize,
    checkpointing: bool,
    /// Input and output embeddings tied: under activation checkpointing one weight's gradient
    /// arrives twice in a backward pass.
    tied: bool,
}

impl Setup {
    const PLAIN: Setup = Setup {
        accum: 2,
        checkpointing: false,
        tied: false,
    };

    fn to_var(self) -> String {
        format!("{},{},{}", self.accum, self.checkpointing, self.tied)
    }

    fn from_env() -> Result<Self> {
        let var = std::env::var("TITAN_DP_TEST_SETUP").unwrap_or_else(|_| Self::PLAIN.to_var());
        let parts: Vec<&str> = var.split(',').collect();
        let [accum, checkpointing, tied] = parts[..] else {
            bail!("TITAN_DP_TEST_SETUP = {var}");
        };
        Ok(Self {
            accum: accum.parse()?,
            checkpointing: checkpointing.parse()?,
            tied: tied.parse()?,
        })
    }
}

/// A token stream without repeats at the row length, so every row is told apart.
fn tokens(seed: u64, n: usize) -> Vec<u32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 50) as u32
        })
        .collect()
}

/// Causal-LM loss that fails at its `at`-th call: a rank that stops mid-run.
struct FailAt {
    calls: std::cell::Cell<usize>,
    at: usize,
}

impl titan::Stateless for FailAt {}

impl Loss<HfLabels> for FailAt {
    fn loss_sum(&self, logits: &Tensor, labels: &HfLabels) -> titan::Result<(Tensor, Tensor)> {
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() == self.at {
            return Err(titan::Error::Training("injected failure at call 3".into()));
        }
        CausalLmLoss.loss_sum(logits, labels)
    }
}

/// Trains as `env`'s rank with `batch` rows per micro-batch: rank 0 writes `metrics.jsonl` to
/// `out`, every rank its served rows (`rows-RANK.json`). `fail_at`: this rank's loss fails at
/// that call.
fn train(
    env: &impl DistributedEnvironment,
    batch: usize,
    setup: Setup,
    out: &Path,
    fail_at: usize,
) -> Result<()> {
    let config = titan::LlamaConfig {
        tie_word_embeddings: setup.tied,
        ..common::small_llama_config()
    };
    let mut model = common::small_llama_of(config, Device::Cpu)?
        .with_activation_checkpointing(setup.checkpointing);
    let dims = ParallelDims::new(env, Device::Cpu)?;
    let stream = tokens(1, 8192);
    let mut train = PackedLoader::new(&dims, stream.clone(), 16, batch, 0, true)?;
    let mut val = PackedLoader::new(&dims, tokens(2, 2048), 16, batch, 0, false)?;
    // The rows this rank serves, read from a twin of its loader.
    let mut twin = PackedLoader::new(&dims, stream, 16, batch, 0, true)?;
    let rows: Vec<Vec<Vec<i64>>> = (0..STEPS as usize * setup.accum)
        .map(|_| {
            let ids = twin.next_batch()?.input_ids.0;
            Ok(Vec::<Vec<i64>>::try_from(&ids)?)
        })
        .collect::<Result<_>>()?;
    std::fs::write(
        out.join(format!("rows-{}.json", env.rank())),
        serde_json::to_vec(&rows)?,
    )?;
    let mut opt = AdamW::new(model.parameters(), AdamWConfig::default())?;
    let mut sched = titan::Warmup::new(&opt, titan::WarmupConfig::default())?;
    let config = TrainingConfig {
        steps: STEPS,
        log_every: 1,
        grad_accum_steps: setup.accum,
        eval_every: 2,
        eval_batches: 2,
        ..TrainingConfig::default()
    };
    let mut trainer = Trainer::new(config).quiet();
    if env.rank() == 0 {
        trainer = trainer.with_sink(titan::metrics::JsonlSink::create(
            out.join("metrics.jsonl"),
        )?);
    }
    trainer.join(env)?;
    let mut loss = FailAt {
        calls: std::cell::Cell::new(0),
        at: fail_at,
    };
    trainer.run(
        wire(&mut model)
            .train_data(&mut train)
            .loss(&mut loss)
            .val_data(&mut val)?
            .optimizer(&mut opt)
            .lr_scheduler(&mut sched),
    )?;
    Ok(())
}

/// In a rank's process: joins the group from torchrun's variables, trains, and on an error
/// leaves the group saying why (as a binary's `main` does) and writes it to `error-RANK.txt`.
fn as_rank(out: &Path) -> Result<()> {
    let fail_at = std::env::var("TITAN_DP_TEST_FAIL_AT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let env = C10dEnv::join(
        titan::dist::Torchrun::from_env()?,
        Device::Cpu,
        Duration::from_secs(60),
    )?;
    let result = train(&env, BATCH, Setup::from_env()?, out, fail_at);
    let error = result.as_ref().err().map(|e| {
        // A peer's failure is passed on as it is (not reported again); anything else as this
        // rank's own.
        match e.downcast_ref::<titan::Error>() {
            Some(titan::Error::PeerStopped(m)) => titan::Error::PeerStopped(m.clone()),
            _ => titan::Error::Training(format!("{e:#}")),
        }
    });
    titan::dist::shutdown(error.as_ref());
    if let Some(error) = &error {
        std::fs::write(
            out.join(format!("error-{}.txt", env.rank())),
            error.to_string(),
        )?;
    }
    result
}

/// Starts this test binary's `test` as `n` ranks writing to `out`, with `extra` variables per
/// rank.
fn spawn(
    test: &str,
    n: usize,
    out: &Path,
    extra: &dyn Fn(usize) -> Vec<(String, String)>,
) -> Result<Vec<Child>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    (0..n)
        .map(|rank| {
            let mut cmd = Command::new(&exe);
            cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, test)
                .env(OUT, out)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", n.to_string())
                .env("LOCAL_WORLD_SIZE", n.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string());
            for (k, v) in extra(rank) {
                cmd.env(k, v);
            }
            Ok(cmd.spawn()?)
        })
        .collect()
}

/// Waits for every child within `limit`; each one's success.
fn wait_all(children: Vec<Child>, limit: Duration) -> Result<Vec<bool>> {
    let started = Instant::now();
    let mut done = vec![None; children.len()];
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    while done.iter().any(Option::is_none) {
        for (i, slot) in children.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Some(status) = child.try_wait()?
            {
                done[i] = Some(status.success());
                *slot = None;
            }
        }
        if started.elapsed() > limit {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
            bail!("ranks still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(done.into_iter().map(|d| d.unwrap_or(false)).collect())
}

/// Whether this process is a rank started by `test`: then it runs as one and the test ends.
fn rank_of(test: &str) -> Option<PathBuf> {
    (std::env::var(ROLE).ok().as_deref() == Some(test))
        .then(|| std::env::var_os(OUT).map(PathBuf::from))
        .flatten()
}

fn records(path: &Path) -> Result<Vec<serde_json::Value>> {
    std::fs::read_to_string(path)
        .with_context(|| path.display().to_string())?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// Test `test`: two ranks with `setup` against one process with their global batch.
fn two_ranks_against_one(test: &str, setup: Setup) -> Result<()> {
    two_ranks_against_one_with(test, setup, setup)
}

/// Test `test`: rank 0 with `setup`, rank 1 with `rank_one` (the same batches and model, built
/// another way) against one process with `setup` and their global batch.
fn two_ranks_against_one_with(test: &str, setup: Setup, rank_one: Setup) -> Result<()> {
    if let Some(out) = rank_of(test) {
        return as_rank(&out);
    }
    let (two, one) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let ranks = spawn(test, 2, two.path(), &|rank| {
        let setup = if rank == 1 { rank_one } else { setup };
        vec![("TITAN_DP_TEST_SETUP".into(), setup.to_var())]
    })?;
    // Meanwhile, one process with both ranks' rows in each batch.
    train(
        &titan::LocalEnv::single(),
        2 * BATCH,
        setup,
        one.path(),
        usize::MAX,
    )?;
    let ok = wait_all(ranks, Duration::from_secs(300))?;
    assert_eq!(ok, [true, true], "a rank failed; its output is above");

    let (a, b) = (
        records(&one.path().join("metrics.jsonl"))?,
        records(&two.path().join("metrics.jsonl"))?,
    );
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    let mut compared = 0;
    for (x, y) in a.iter().zip(&b) {
        for key in ["loss", "grad_norm", "val_loss"] {
            let (Some(u), Some(v)) = (x[key].as_f64(), y[key].as_f64()) else {
                assert_eq!(x[key].is_null(), y[key].is_null(), "{key}: {x} vs {y}");
                continue;
            };
            let rel = (u - v).abs() / u.abs().max(1e-12);
            assert!(
                rel <= 1e-5,
                "{key} at {}: one process {u}, two ranks {v} ({rel:e})",
                x["step"]
            );
            compared += 1;
        }
    }
    // 4 steps' loss and norm, 2 evaluations.
    assert_eq!(compared, 2 * STEPS as usize + 2);
    // The ranks' rows are disjoint, and together they are the one process's, batch by batch.
    let read = |dir: &Path, rank: usize| -> Result<Vec<Vec<Vec<i64>>>> {
        Ok(serde_json::from_slice(&std::fs::read(
            dir.join(format!("rows-{rank}.json")),
        )?)?)
    };
    let (whole, r0, r1) = (
        read(one.path(), 0)?,
        read(two.path(), 0)?,
        read(two.path(), 1)?,
    );
    assert_eq!(whole.len(), STEPS as usize * setup.accum);
    for (k, ((w, x), y)) in whole.iter().zip(&r0).zip(&r1).enumerate() {
        let (x, y): (BTreeSet<_>, BTreeSet<_>) = (x.iter().collect(), y.iter().collect());
        assert!(x.is_disjoint(&y), "batch {k}: both ranks read a row");
        let union: BTreeSet<_> = x.union(&y).copied().collect();
        assert_eq!(union, w.iter().collect::<BTreeSet<_>>(), "batch {k}");
    }
    Ok(())
}

#[test]
fn two_ranks_train_exactly_like_one_process_with_their_global_batch() -> Result<()> {
    two_ranks_against_one(
        "two_ranks_train_exactly_like_one_process_with_their_global_batch",
        Setup::PLAIN,
    )
}

#[test]
fn so_they_do_with_activation_checkpointing_and_three_micro_batches() -> Result<()> {
    two_ranks_against_one(
        "so_they_do_with_activation_checkpointing_and_three_micro_batches",
        Setup {
            accum: 3,
            checkpointing: true,
            tied: false,
        },
    )
}

#[test]
fn and_with_tied_embeddings_whose_gradient_arrives_twice() -> Result<()> {
    two_ranks_against_one(
        "and_with_tied_embeddings_whose_gradient_arrives_twice",
        Setup {
            accum: 2,
            checkpointing: true,
            tied: true,
        },
    )
}

/// Rank 1 alone recomputes its blocks, so its tied embedding's gradient arrives twice and
/// rank 0's once: the ranks still pair their reductions, and agree to reduce again.
#[test]
fn and_when_the_gradient_arrives_twice_on_one_rank_only() -> Result<()> {
    let tied = |checkpointing| Setup {
        accum: 2,
        checkpointing,
        tied: true,
    };
    two_ranks_against_one_with(
        "and_when_the_gradient_arrives_twice_on_one_rank_only",
        tied(false),
        tied(true),
    )
}

#[test]
fn a_rank_that_fails_stops_the_other_with_an_error_naming_it() -> Result<()> {
    const TEST: &str = "a_rank_that_fails_stops_the_other_with_an_error_naming_it";
    if let Some(out) = rank_of(TEST) {
        // The failing rank's own test fails; the parent reads the files.
        let _ = as_rank(&out);
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    // Rank 1's loss fails at its third call: step 2's first micro-batch.
    let ranks = spawn(TEST, 2, dir.path(), &|rank| {
        if rank == 1 {
            vec![("TITAN_DP_TEST_FAIL_AT".into(), "3".into())]
        } else {
            Vec::new()
        }
    })?;
    wait_all(ranks, Duration::from_secs(120))?;
    let elapsed = started.elapsed();
    let read = |rank: usize| std::fs::read_to_string(dir.path().join(format!("error-{rank}.txt")));
    let failed = read(1)?;
    assert!(failed.contains("injected failure"), "{failed}");
    let other = read(0).context("rank 0 ended without an error")?;
    assert!(
        other.contains("rank 1 stopped with an error") && other.contains("injected failure"),
        "{other}"
    );
    // Well within the 60 s timeout: the closed connection is seen at once.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    Ok(())
}

/// Runs tiny_llama shrunk (1 layer, seq 64, 2 rows per rank) with `flags` into `out`.
fn tiny_llama(out: &Path, flags: &[&str]) -> Result<std::process::Output> {
    let output = Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
        .args([
            "--steps",
            "6",
            "--log-every",
            "1",
            "--checkpoint-every",
            "3",
        ])
        .args(common::SHRUNK)
        .arg("--output-dir")
        .arg(out)
        .args(flags)
        .env_remove("WORLD_SIZE")
        .output()?;
    if !output.status.success() {
        bail!(
            "tiny_llama failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// The loss and gradient norm of each step record, as written.
fn step_values(records: &[serde_json::Value]) -> Vec<(u64, String, String)> {
    records
        .iter()
        .filter_map(|r| {
            Some((
                r["step"].as_u64()?,
                r.get("loss")?.to_string(),
                r.get("grad_norm")?.to_string(),
            ))
        })
        .collect()
}

/// The launcher started by hand, with its two ranks, training 400 steps, checkpoints only at
/// the end.
fn launcher(out: &Path) -> Result<std::process::Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
        .args([
            "--steps",
            "400",
            "--log-every",
            "1",
            "--checkpoint-every",
            "1000",
        ])
        .args(common::SHRUNK)
        .arg("--output-dir")
        .arg(out)
        .args(["--nproc-per-node", "2", "--set", "training.eval_every=0"])
        .env_remove("WORLD_SIZE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?)
}

/// A SIGTERM or SIGINT (Ctrl-C) sent to the launcher alone reaches both ranks, which stop at
/// the same log point with one checkpoint; the launcher says so and exits with the stopped
/// status, not as a failure (the ranks run in a process group of their own, so a terminal's
/// Ctrl-C, sent to the whole foreground group, also reaches them once, through the launcher).
#[test]
fn a_sigterm_or_sigint_to_the_launcher_stops_both_ranks_with_one_checkpoint() -> Result<()> {
    for (signal, name) in [("TERM", "SIGTERM"), ("INT", "SIGINT")] {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("run");
        let child = launcher(&out)?;
        let stopped = common::signal_once_training(child, &out, signal, Duration::from_secs(180))?;
        let err = String::from_utf8_lossy(&stopped.stderr);
        ensure!(
            stopped.status.code() == Some(4),
            "{name}: {:?}: {err}",
            stopped.status
        );
        ensure!(
            err.contains(&format!("launcher: {name}"))
                && err.contains(&format!("the ranks stopped on {name}")),
            "{err}"
        );
        ensure!(
            err.contains(&format!("stopped by {name} after step")),
            "{err}"
        );
        let checkpoints = std::fs::read_dir(out.join("checkpoints"))?.count();
        ensure!(checkpoints == 1, "{name}: {checkpoints} checkpoints");
    }
    Ok(())
}

/// A launcher killed outright (SIGKILL: nothing of it runs) still stops its ranks: each gets
/// SIGTERM from the kernel as its parent dies, and they stop with a checkpoint rather than
/// train on, orphaned, holding the output directory.
#[test]
fn a_launcher_killed_outright_leaves_no_rank_training() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let child = launcher(&out)?;
    let killed = common::signal_once_training(child, &out, "KILL", Duration::from_secs(180))?;
    ensure!(killed.status.code().is_none(), "{:?}", killed.status);
    let deadline = Instant::now() + Duration::from_secs(120);
    // The stop checkpoint appears, then the directory's lock is let go (the ranks exited).
    loop {
        let checkpoints = std::fs::read_dir(out.join("checkpoints")).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
                .count()
        });
        // Rank 0 holds the directory's lock (an flock) while it lives.
        let free = std::fs::File::open(out.join(".lock"))?.try_lock().is_ok();
        if checkpoints == 1 && free {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the ranks still run 120 s after their launcher died ({checkpoints} checkpoints)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

#[test]
fn the_binarys_own_launcher_trains_two_ranks_writes_once_and_resumes_exactly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let first = tiny_llama(&out, &["--nproc-per-node", "2"])?;
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("× 2 ranks (Gloo, data parallel, 2 gradient buckets)"),
        "{stderr}"
    );
    // Rank 0 alone speaks and writes: one line per step, one metrics record per step.
    assert_eq!(stderr.matches("step      3 ").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("done: ").count(), 1, "{stderr}");
    let before = step_values(&records(&out.join("metrics.jsonl"))?);
    assert_eq!(
        before.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(
        out.join("checkpoints/step-3/train_state.json"),
    )?)?;
    let positions = state["train_data_by_rank"].as_array().context("by rank")?;
    assert_eq!(positions.len(), 2);
    assert_ne!(
        positions[0], positions[1],
        "the ranks read the same documents"
    );
    assert!(out.join("hf/config.json").exists() && out.join("tokenizer.json").exists());

    // Killed after step 3's checkpoint: the rerun resumes there, on both ranks, exactly.
    std::fs::remove_dir_all(out.join("checkpoints/step-6"))?;
    let again = tiny_llama(&out, &["--nproc-per-node", "2"])?;
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("resuming after step 3"), "{stderr}");
    // Each step once: the stopped run's steps 4 to 6 are moved aside, the resumed ones logged.
    let after = step_values(&records(&out.join("metrics.jsonl"))?);
    assert_eq!(after.len(), 6, "{after:?}");
    assert_eq!(after[3..], before[3..], "steps 4 to 6 after the resume");

    // A checkpoint of 2 ranks resumes on 1, and that one's on 3: each time the unread data
    // is dealt anew (exactness is tested in `titan::data`), and training goes on.
    for (ranks, steps) in [("1", "8"), ("3", "10")] {
        let more = Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
            .args([
                "--steps",
                steps,
                "--log-every",
                "1",
                "--nproc-per-node",
                ranks,
            ])
            .args(common::SHRUNK)
            .arg("--output-dir")
            .arg(&out)
            .env_remove("WORLD_SIZE")
            .output()?;
        let stderr = String::from_utf8_lossy(&more.stderr);
        assert!(more.status.success(), "{stderr}");
        assert!(
            stderr.contains("whose unread data is now dealt to") && stderr.contains(ranks),
            "{stderr}"
        );
    }
    let records = step_values(&records(&out.join("metrics.jsonl"))?);
    let steps: Vec<u64> = records.iter().map(|s| s.0).collect();
    assert_eq!(steps, (1..=10).collect::<Vec<_>>(), "each step once");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(
        out.join("checkpoints/step-10/train_state.json"),
    )?)?;
    assert_eq!(
        state["train_data_by_rank"].as_array().map(Vec::len),
        Some(3)
    );
    Ok(())
}

/// With two ranks and `--pretokenize`, rank 0 alone tokenizes the data files into shards while
/// the other waits, and nothing trains; a later run finds them, trains on them and leaves them
/// as they are.
#[test]
fn two_ranks_tokenize_the_data_once_and_read_the_shards() -> Result<()> {
    use titan::data::{DataSource, Split, StoryConfig};
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let config = StoryConfig {
        seed: 2,
        num_stories: 400,
    };
    let stories = DataSource::stories(config, Split::All).sample(400)?;
    for (i, part) in stories.chunks(100).enumerate() {
        let lines: String = part
            .iter()
            .map(|text| format!("{}\n", serde_json::json!({ "text": text })))
            .collect();
        std::fs::write(data.join(format!("part-{i}.jsonl")), lines)?;
    }
    let tokens = dir.path().join("tokens");
    let run = |out: &str, extra: &[&str]| -> Result<String> {
        let output = Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
            .args(["--steps", "2", "--nproc-per-node", "2", "--data"])
            .arg(&data)
            .args(common::SHRUNK)
            .arg("--output-dir")
            .arg(dir.path().join(out))
            .arg("--set")
            .arg(format!("dataset.tokens_dir={}", tokens.display()))
            .args(extra)
            .env_remove("WORLD_SIZE")
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        if !output.status.success() {
            bail!("tiny_llama failed:\n{stderr}");
        }
        Ok(stderr)
    };
    let first = run("first", &["--pretokenize"])?;
    assert!(first.contains("token shards: "), "{first}");
    assert!(first.contains("tokenized: the token shards of"), "{first}");
    assert!(
        !dir.path().join("first/metrics.jsonl").exists(),
        "--pretokenize trained"
    );
    let files = |ext: &str| -> Result<Vec<(PathBuf, std::time::SystemTime)>> {
        let mut found = Vec::new();
        for sub in std::fs::read_dir(&tokens)? {
            for entry in std::fs::read_dir(sub?.path())? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == ext) {
                    let modified = std::fs::metadata(&path)?.modified()?;
                    found.push((path, modified));
                }
            }
        }
        found.sort();
        Ok(found)
    };
    let manifests = files("json")?;
    assert_eq!(manifests.len(), 4, "{manifests:?}");
    assert!(files("tmp")?.is_empty(), "temporary files left");
    let second = run("second", &[])?;
    assert!(second.contains("token shards: "), "{second}");
    assert!(dir.path().join("second/metrics.jsonl").exists(), "{second}");
    assert_eq!(files("json")?, manifests, "the shards were written again");
    Ok(())
}

/// A distributed environment of the user's own that counts two processes but has no process
/// group: the trainer refuses it, rather than two processes training two models.
#[test]
fn an_environment_of_several_processes_without_a_group_is_refused() {
    struct TwoOfUs;
    impl DistributedEnvironment for TwoOfUs {
        fn rank(&self) -> usize {
            1
        }
        fn world_size(&self) -> usize {
            2
        }
        fn local_rank(&self) -> usize {
            1
        }
    }
    let mut trainer = Trainer::new(TrainingConfig::default());
    let err = trainer.join(&TwoOfUs).expect_err("no group").to_string();
    assert!(
        err.contains("has 2 processes but no process group") && err.contains("TwoOfUs"),
        "{err}"
    );
    // One process needs none.
    assert!(trainer.join(&titan::LocalEnv::single()).is_ok());
}

/// torchrun itself (torch's `torch.distributed.run`, from the project's wheel) launches the
/// binary as it would torchtitan: its agent serves the store, every rank is a client under
/// `/worker/attempt_0`, and the run trains and writes once. Skipped without Python's torch
/// (CI has it).
#[test]
fn torchrun_launches_the_binary() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !common::have_python(root, "torch.distributed.run")? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let output = common::python(root)
        .args([
            "-m",
            "torch.distributed.run",
            "--no-python",
            "--nproc-per-node",
            "2",
        ])
        .args([
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            &port.to_string(),
        ])
        .arg(env!("CARGO_BIN_EXE_tiny_llama"))
        .args([
            "--steps",
            "3",
            "--log-every",
            "1",
            "--checkpoint-every",
            "3",
        ])
        .args(common::SHRUNK)
        .arg("--output-dir")
        .arg(&out)
        .env_remove("WORLD_SIZE")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("× 2 ranks (Gloo, data parallel"),
        "{stderr}"
    );
    let steps: Vec<u64> = step_values(&records(&out.join("metrics.jsonl"))?)
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(
        out.join("checkpoints/step-3/train_state.json"),
    )?)?;
    assert_eq!(
        state["train_data_by_rank"].as_array().map(Vec::len),
        Some(2)
    );
    Ok(())
}

/// Two ranks whose output directories differ (no shared filesystem): rank 0 finds a checkpoint,
/// rank 1 does not. Both stop before training, saying they start from different steps.
#[test]
fn ranks_that_see_different_checkpoints_stop_before_training() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (shared, alone) = (dir.path().join("a"), dir.path().join("b"));
    tiny_llama(&shared, &["--nproc-per-node", "2"])?;
    // Rank 1's directory has the tokenizer (so it gets that far) but no checkpoint.
    std::fs::create_dir_all(&alone)?;
    for file in ["tokenizer.json", "tokenizer.fingerprint.json"] {
        std::fs::copy(shared.join(file), alone.join(file))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let ranks: Vec<Child> = [&shared, &alone]
        .iter()
        .enumerate()
        .map(|(rank, out)| {
            Ok(Command::new(env!("CARGO_BIN_EXE_tiny_llama"))
                .args(["--steps", "9", "--checkpoint-every", "3"])
                .args(common::SHRUNK)
                .arg("--output-dir")
                .arg(out)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stderr(std::process::Stdio::piped())
                .spawn()?)
        })
        .collect::<Result<_>>()?;
    let outputs = ranks
        .into_iter()
        .map(|child| Ok(child.wait_with_output()?))
        .collect::<Result<Vec<_>>>()?;
    for (rank, output) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "rank {rank} trained:\n{stderr}");
        assert!(
            stderr.contains("the ranks start from different steps (0 to 6"),
            "rank {rank}:\n{stderr}"
        );
    }
    // Nothing was trained: rank 0's checkpoints end at step 6.
    assert!(!shared.join("checkpoints/step-9").exists());
    Ok(())
}
