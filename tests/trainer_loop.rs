//! The training loop: a NaN loss stops the run naming the step and its batches, staged batches
//! train exactly like eager ones, CUDA graph steps train like eager ones, a run that would train
//! nothing the model uses (or counts no token) stops with an error saying why, and the profiler
//! traces chosen steps.

mod common;

use anyhow::Result;
use common::{max_diff, small_llama, small_llama_on};
use titan::data::HfLabels;
use titan::experiment::wire;
use titan::tch::{Device, Tensor};
use titan::{AdamW, AdamWConfig, CausalLmLoss, Llama, Loss, Model};

/// Causal-LM loss that turns NaN from its `at`-th call on.
struct NanFrom {
    calls: std::cell::Cell<usize>,
    at: usize,
    /// The first call that is finite again.
    until: usize,
}

/// Its call count decides when the NaNs start, so a checkpoint keeps it.
impl titan::Stateful for NanFrom {
    fn state_dict(&self) -> titan::Result<titan::checkpoint::StateDict> {
        titan::checkpoint::StateDict::of_value(&self.calls.get())
    }
    fn load_state_dict(&mut self, state: titan::checkpoint::StateDict) -> titan::Result<()> {
        self.calls.set(state.value_as("NanFrom")?);
        Ok(())
    }
}

impl Loss<HfLabels> for NanFrom {
    fn loss_sum(&self, logits: &Tensor, labels: &HfLabels) -> titan::Result<(Tensor, Tensor)> {
        let (sum, count) = CausalLmLoss.loss_sum(logits, labels)?;
        self.calls.set(self.calls.get() + 1);
        let sum = if (self.at..self.until).contains(&self.calls.get()) {
            sum * f64::NAN
        } else {
            sum
        };
        Ok((sum, count))
    }
}

/// Trains `model` under `loss` on a small packed token stream with AdamW and the default
/// warmup, staged or eager; returns the run's outcome and its `metrics.jsonl`.
fn small_run<L: Loss<HfLabels> + titan::Stateful>(
    model: &mut Llama,
    loss: &mut L,
    config: titan::TrainingConfig,
    staged: bool,
) -> Result<(titan::Result<titan::trainer::Summary>, String)> {
    let dims = titan::ParallelDims::new(&titan::LocalEnv::single(), model.device())?;
    let tokens: Vec<u32> = (0..4096).map(|i| (i * 7 % 50) as u32).collect();
    let mut train = titan::data::PackedLoader::new(&dims, tokens, 16, 2, 0, true)?;
    let mut opt = AdamW::new(model.parameters(), AdamWConfig::default())?;
    let mut sched = titan::Warmup::new(&opt, titan::WarmupConfig::default())?;
    let dir = tempfile::tempdir()?;
    let metrics = dir.path().join("metrics.jsonl");
    let mut trainer = titan::Trainer::new(config)
        .quiet()
        .with_sink(titan::metrics::JsonlSink::create(&metrics)?);
    if staged {
        trainer = trainer.with_staged_batches();
    }
    let outcome = trainer.run(
        wire(model)
            .train_data(&mut train)
            .loss(loss)
            .optimizer(&mut opt)
            .lr_scheduler(&mut sched),
    );
    drop(trainer);
    Ok((outcome, std::fs::read_to_string(&metrics)?))
}

fn run_until_nan(at: usize, accum: usize) -> Result<(String, String)> {
    let mut loss = NanFrom {
        calls: std::cell::Cell::new(0),
        at,
        until: usize::MAX,
    };
    let config = titan::TrainingConfig {
        steps: 10,
        log_every: 5,
        grad_accum_steps: accum,
        // Stop at the first non-finite step.
        max_skipped_steps: 0,
        ..titan::TrainingConfig::default()
    };
    let (outcome, metrics) = small_run(&mut small_llama()?, &mut loss, config, false)?;
    let err = outcome
        .expect_err("a NaN loss must stop the run")
        .to_string();
    Ok((err, metrics))
}

#[test]
fn a_nan_loss_stops_the_run_naming_the_step_and_batches() -> Result<()> {
    let (err, metrics) = run_until_nan(3, 1)?;
    assert!(err.contains("step 3 (training batch 3 "), "{err}");
    assert!(
        metrics.is_empty(),
        "nothing about the bad steps is logged: {metrics}"
    );
    let (err, metrics) = run_until_nan(14, 2)?;
    assert!(err.contains("step 7 (training batches 13..=14 "), "{err}");
    // Step 5 was logged (finite); the error came at the step-10 log point, before writing it.
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    // serde_json writes NaN as null.
    assert!(
        metrics.contains("\"step\":5") && !metrics.contains("\"loss\":null"),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn a_non_finite_step_is_skipped_on_the_device_and_the_run_goes_on() -> Result<()> {
    // One NaN batch (the 3rd): AdamW skips step 3, the weights stay finite, the run ends.
    let mut model = small_llama()?;
    let mut loss = NanFrom {
        calls: std::cell::Cell::new(0),
        at: 3,
        until: 4,
    };
    let config = titan::TrainingConfig {
        steps: 6,
        log_every: 1,
        ..titan::TrainingConfig::default()
    };
    let (outcome, metrics) = small_run(&mut model, &mut loss, config, false)?;
    outcome?;
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines.len(), 6, "{metrics}");
    assert!(
        lines[2].contains("\"loss\":\"NaN\""),
        "reported as NaN, not null: {}",
        lines[2]
    );
    assert!(lines[5].contains("\"skipped_steps\":1"), "{}", lines[5]);
    for (name, p) in model.parameters().named() {
        let finite = p.isfinite().all().int64_value(&[]) == 1;
        assert!(finite, "{name} took the NaN step");
    }

    // The last batch NaN: skipped like any other, but a run that ends on it has diverged and
    // says so rather than end as trained (every step is still logged).
    let mut loss = NanFrom {
        calls: std::cell::Cell::new(0),
        at: 6,
        until: usize::MAX,
    };
    let config = titan::TrainingConfig {
        steps: 6,
        log_every: 1,
        ..titan::TrainingConfig::default()
    };
    let (outcome, metrics) = small_run(&mut small_llama()?, &mut loss, config, false)?;
    let err = outcome.expect_err("ends on a NaN step").to_string();
    assert!(err.contains("1 step(s) in a row (steps 6 to 6)"), "{err}");
    assert_eq!(metrics.lines().count(), 6, "{metrics}");

    // NaN from the 3rd batch on: more than 2 skipped in a row stops the run.
    let mut loss = NanFrom {
        calls: std::cell::Cell::new(0),
        at: 3,
        until: usize::MAX,
    };
    let config = titan::TrainingConfig {
        steps: 10,
        log_every: 1,
        max_skipped_steps: 2,
        ..titan::TrainingConfig::default()
    };
    let (outcome, metrics) = small_run(&mut small_llama()?, &mut loss, config, false)?;
    let err = outcome.expect_err("too many in a row").to_string();
    assert!(
        err.contains("step 3 (training batch 3 ")
            && err.contains("3 steps in a row")
            && err.contains("max_skipped_steps = 2"),
        "{err}"
    );
    assert_eq!(
        metrics.lines().count(),
        4,
        "steps 1 to 4 are logged: {metrics}"
    );
    Ok(())
}

/// Weights and per-step losses after `steps` steps of 2 micro-batches on `device`, eager,
/// staged, or (on CUDA, with `graph`) as a replayed CUDA graph.
fn run_steps(
    device: Device,
    steps: u64,
    staged: bool,
    graph: bool,
) -> Result<(Vec<Tensor>, String)> {
    let mut model = small_llama_on(device)?;
    let config = titan::TrainingConfig {
        steps,
        log_every: 1,
        grad_accum_steps: 2,
        cuda_graph: graph,
        ..titan::TrainingConfig::default()
    };
    let (outcome, metrics) = small_run(&mut model, &mut CausalLmLoss, config, staged)?;
    outcome?;
    let losses: Vec<String> = metrics
        .lines()
        .map(|l| Ok(serde_json::from_str::<serde_json::Value>(l)?["loss"].to_string()))
        .collect::<Result<_>>()?;
    let weights = model
        .parameters()
        .named()
        .iter()
        .map(|(_, p)| p.detach().to(Device::Cpu))
        .collect();
    Ok((weights, losses.join(" ")))
}

/// Weights and per-step losses after 6 steps of 2 micro-batches on the CPU, eager or staged.
fn six_steps(staged: bool) -> Result<(Vec<Tensor>, String)> {
    run_steps(Device::Cpu, 6, staged, false)
}

#[test]
fn staged_batches_train_exactly_like_eager_ones() -> Result<()> {
    // The data path of CUDA graph replay (each batch copied into fixed buffers, the step run
    // from them), on CPU: same losses, same weights.
    let (eager, eager_losses) = six_steps(false)?;
    let (staged, staged_losses) = six_steps(true)?;
    assert_eq!(eager_losses, staged_losses);
    assert_eq!(eager_losses.split(' ').count(), 6, "{eager_losses}");
    for (a, b) in eager.iter().zip(&staged) {
        assert_eq!(max_diff(a, b)?, 0.0);
    }
    Ok(())
}

#[test]
fn cuda_graph_steps_train_like_eager_ones() -> Result<()> {
    if !titan::tch::Cuda::is_available() || !titan::shim::has_cuda_graphs() {
        eprintln!("no CUDA device, or a build without CUDA's headers: nothing to check");
        return Ok(());
    }
    // 3 eager warm-up steps, 1 captured, 4 replays; the warmup schedule changes the rate every
    // step, so a rate baked into the capture would show.
    let (eager, eager_losses) = run_steps(Device::Cuda(0), 8, false, false)?;
    let (graph, graph_losses) = run_steps(Device::Cuda(0), 8, false, true)?;
    let parse = |s: &str| -> Vec<f64> { s.split(' ').filter_map(|v| v.parse().ok()).collect() };
    let (a, b) = (parse(&eager_losses), parse(&graph_losses));
    assert_eq!(a.len(), 8, "{eager_losses}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "{eager_losses} vs {graph_losses}");
    }
    for (x, y) in eager.iter().zip(&graph) {
        assert!(max_diff(x, y)? < 1e-4);
    }
    let initial = run_steps(Device::Cuda(0), 0, false, false)?.0;
    assert!(
        max_diff(&initial[0], &graph[0])? > 1e-4,
        "the graph trained nothing"
    );
    Ok(())
}

/// A model whose `parameters()` are copies of the weights forward computes with (made once,
/// so the optimizer and the trainer see the same copies): backward never reaches them.
struct CopiedWeights {
    model: Llama,
    copies: Vec<titan::Parameter>,
}

impl CopiedWeights {
    fn new(model: Llama) -> Self {
        let copies = model
            .parameters()
            .into_iter()
            .map(|p| titan::Parameter {
                tensor: p.tensor.detach().copy().set_requires_grad(true),
                ..p
            })
            .collect();
        Self { model, copies }
    }
}

impl titan::Stateless for CopiedWeights {}

impl Model for CopiedWeights {
    type Input = titan::data::TokenIds;
    fn forward(&self, input: &Self::Input) -> titan::Result<Tensor> {
        self.model.forward(input)
    }
    fn parameters(&self) -> titan::Parameters {
        let list = self
            .copies
            .iter()
            .map(|p| titan::Parameter {
                name: p.name.clone(),
                tensor: p.tensor.shallow_clone(),
                group: p.group,
            })
            .collect();
        titan::Parameters::from_list(list).expect("unique names")
    }
    fn device(&self) -> Device {
        self.model.device()
    }
    fn vocab_size(&self) -> i64 {
        self.model.vocab_size()
    }
    fn max_seq_len(&self) -> i64 {
        self.model.max_seq_len()
    }
}

/// Two steps of `model` with AdamW over `params`; the run's outcome.
fn two_steps_over<M: Model<Input = titan::data::TokenIds> + titan::Stateful>(
    model: &mut M,
    params: titan::Parameters,
) -> Result<titan::Result<titan::trainer::Summary>> {
    let dims = titan::ParallelDims::new(&titan::LocalEnv::single(), Device::Cpu)?;
    let tokens: Vec<u32> = (0..4096).map(|i| (i * 7 % 50) as u32).collect();
    let mut train = titan::data::PackedLoader::new(&dims, tokens, 16, 2, 0, true)?;
    let mut opt = AdamW::new(params, AdamWConfig::default())?;
    let mut sched = titan::Warmup::new(&opt, titan::WarmupConfig::default())?;
    let config = titan::TrainingConfig {
        steps: 2,
        ..titan::TrainingConfig::default()
    };
    Ok(titan::Trainer::new(config).quiet().run(
        wire(model)
            .train_data(&mut train)
            .loss(&mut CausalLmLoss)
            .optimizer(&mut opt)
            .lr_scheduler(&mut sched),
    ))
}

/// Two ways to train nothing, each stopped with an error that says what is wrong: an optimizer
/// over another model's parameters (before step 1), and a model whose parameters are not what
/// forward computes with (after step 1, when backward reached none of them).
#[test]
fn training_that_would_change_nothing_the_model_uses_is_refused() -> Result<()> {
    let mut model = small_llama()?;
    let before: Vec<Tensor> = model
        .parameters()
        .named()
        .iter()
        .map(|(_, p)| p.copy())
        .collect();
    let other = small_llama()?;
    let err = two_steps_over(&mut model, other.parameters())?
        .expect_err("another model's parameters")
        .to_string();
    assert!(
        err.contains("not the model's parameters") && err.contains("model.parameters()"),
        "{err}"
    );
    for ((_, p), b) in model.parameters().named().iter().zip(&before) {
        assert_eq!(max_diff(p, b)?, 0.0, "nothing trained");
    }

    // Copies: the optimizer and the trainer agree, but backward reaches the real weights.
    let mut copied = CopiedWeights::new(small_llama()?);
    let params = copied.parameters();
    let err = two_steps_over(&mut copied, params)?
        .expect_err("copies")
        .to_string();
    assert!(
        err.contains("step 1") && err.contains("none of the model's"),
        "{err}"
    );
    Ok(())
}

/// A loss that ignores every label (each set to -100): it counts no token.
struct IgnoresAll;

impl titan::Stateless for IgnoresAll {}

impl Loss<HfLabels> for IgnoresAll {
    fn loss_sum(&self, logits: &Tensor, labels: &HfLabels) -> titan::Result<(Tensor, Tensor)> {
        CausalLmLoss.loss_sum(logits, &HfLabels(labels.0.full_like(-100)))
    }
}

/// Every label ignored: the loss is 0 and the gradients are zeros, so the first step stops the
/// run, saying why, where it would otherwise log a loss of 0 and train nothing; an evaluation
/// that counts no token is an error too.
#[test]
fn a_first_step_that_counts_no_token_stops_the_run() -> Result<()> {
    let config = titan::TrainingConfig {
        steps: 3,
        grad_accum_steps: 2,
        ..titan::TrainingConfig::default()
    };
    let (outcome, _) = small_run(&mut small_llama()?, &mut IgnoresAll, config, false)?;
    let err = outcome.expect_err("no token counted").to_string();
    assert!(
        err.contains("step 1") && err.contains("counted no token") && err.contains("2 micro"),
        "{err}"
    );
    // So does an evaluation: a validation loss of 0 would read as a perfect model.
    let dims = titan::ParallelDims::new(&titan::LocalEnv::single(), Device::Cpu)?;
    let tokens: Vec<u32> = (0..512).map(|i| (i * 7 % 50) as u32).collect();
    let mut val = titan::data::PackedLoader::new(&dims, tokens, 16, 2, 0, false)?;
    let err = titan::trainer::evaluate(&small_llama()?, &mut val, &IgnoresAll, 3)
        .expect_err("no token counted")
        .to_string();
    assert!(err.contains("counted no token in 3 batches"), "{err}");
    Ok(())
}

/// The names of a trace's events.
fn trace_names(path: &std::path::Path) -> Result<Vec<String>> {
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    Ok(trace["traceEvents"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// `profile_every = 3` with 2 steps each traces steps 2–3 and 5 (the run ends at 5) into one
/// file per span, each step's operators inside its `ProfilerStep#N`; bad settings are refused.
#[test]
fn the_profiler_traces_the_last_steps_of_every_span() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = titan::TrainingConfig {
        steps: 5,
        profile_every: 3,
        profile_steps: 2,
        output_dir: Some(dir.path().to_path_buf()),
        ..titan::TrainingConfig::default()
    };
    let (outcome, _) = small_run(
        &mut small_llama()?,
        &mut CausalLmLoss,
        config.clone(),
        false,
    )?;
    outcome?;
    let profile = dir.path().join("profile");
    let mut spans: Vec<String> = std::fs::read_dir(&profile)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    spans.sort();
    assert_eq!(spans, ["step-3", "step-5"]);
    // Step 4 opens the second span but is not among its last 2 (5 and 6; the run ends at 5).
    for (span, traced, untraced) in [("step-3", vec![2, 3], 1), ("step-5", vec![5], 4)] {
        let path = profile.join(span).join("rank0.pt.trace.json");
        let names = trace_names(&path)?;
        let steps: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("ProfilerStep#"))
            .collect();
        let want: Vec<String> = traced.iter().map(|s| format!("ProfilerStep#{s}")).collect();
        assert_eq!(steps, want.iter().collect::<Vec<_>>(), "{span}");
        assert!(!names.contains(&format!("ProfilerStep#{untraced}")));
        assert!(
            names.iter().any(|n| n == "aten::mm" || n == "aten::addmm"),
            "{span}: no matmul among {} events",
            names.len()
        );
    }
    let bad = titan::TrainingConfig {
        profile_steps: 4,
        ..config
    };
    let err = bad.validate().expect_err("4 of 3").to_string();
    assert!(
        err.contains("training.profile_steps") && err.contains('4'),
        "{err}"
    );
    Ok(())
}
