//! Training features: Adafactor matches `torch.optim.Adafactor`, fused AdamW and SGD match
//! libtorch's own optimizers, every optimizer's state saves and restores mid-run, AdamW skips
//! weight decay for norms and embeddings, SGD with momentum trains, token-weighted accumulation of 4
//! micro-batches of 8 equals one batch of 32 with padding present, and bf16 compute keeps f32
//! master weights.

use std::path::Path;

use anyhow::{Context, Result};
use titan::data::{HfLabels, IGNORE_INDEX, TokenIds};
use titan::tch::{Device, Kind, Tensor, nn};
use titan::trainer::accumulate_gradients;
use titan::{
    Adafactor, AdafactorConfig, AdamW, AdamWConfig, CausalLmLoss, Llama, LlamaConfig, Loss, Model,
    Optimizer, Sgd, SgdConfig,
};

/// Tests run on parallel threads and libtorch's generator is global: whoever seeds and draws
/// holds this lock, so two models built from seed 0 are the same model.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn small_llama() -> Result<Llama> {
    small_llama_on(Device::Cpu)
}

fn small_llama_on(device: Device) -> Result<Llama> {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    titan::device::seed_everything(0);
    Ok(Llama::new(
        LlamaConfig {
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 32,
            ..LlamaConfig::tiny()
        },
        device,
    )?)
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok((a - b).abs().max().double_value(&[]))
}

/// `tests/fixtures/adafactor.safetensors` (from `make_adafactor_fixture.py`): weights and
/// gradients of 4 `torch.optim.Adafactor` steps, by name.
fn adafactor_fixture() -> Result<std::collections::HashMap<String, Tensor>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adafactor.safetensors");
    Ok(Tensor::read_safetensors(&path)?.into_iter().collect())
}

#[test]
fn adafactor_matches_pytorch() -> Result<()> {
    let fixture = adafactor_fixture()?;
    let get = |name: &str| fixture.get(name).context(name.to_string());
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().var_copy("w", get("w0")?);
    let b = vs.root().var_copy("b", get("b0")?);
    let mut opt = Adafactor::new(
        titan::Parameters::new(&vs),
        AdafactorConfig {
            weight_decay: 0.05,
            ..AdafactorConfig::default()
        },
    )?;
    // Factored: 5 row and 7 column statistics for the matrix, 7 for the vector.
    assert_eq!(opt.state_numel(), 5 + 7 + 7);
    for step in 1..=4 {
        opt.zero_grad()?;
        // d/dw of sum(w ⊙ g) is g: the fixture's gradients, exactly.
        let loss = (&w * get(&format!("gw{step}"))?).sum(Kind::Float)
            + (&b * get(&format!("gb{step}"))?).sum(Kind::Float);
        loss.backward();
        opt.step()?;
        let (dw, db) = (
            max_diff(&w, get(&format!("w{step}"))?)?,
            max_diff(&b, get(&format!("b{step}"))?)?,
        );
        assert!(
            dw < 1e-6 && db < 1e-6,
            "step {step}: |Δw| {dw:e}, |Δb| {db:e}"
        );
    }
    Ok(())
}

#[test]
fn adafactor_state_saves_and_restores_mid_run() -> Result<()> {
    let fixture = adafactor_fixture()?;
    let get = |name: &str| fixture.get(name).context(name.to_string());
    let config = AdafactorConfig {
        weight_decay: 0.05,
        ..AdafactorConfig::default()
    };
    let apply = |opt: &mut Adafactor, w: &Tensor, b: &Tensor, step: usize| -> Result<()> {
        opt.zero_grad()?;
        let loss = (w * get(&format!("gw{step}"))?).sum(Kind::Float)
            + (b * get(&format!("gb{step}"))?).sum(Kind::Float);
        loss.backward();
        opt.step()?;
        Ok(())
    };
    let dir = tempfile::tempdir()?;
    let saved = dir.path().join("adafactor_state.safetensors");
    {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", get("w0")?);
        let b = vs.root().var_copy("b", get("b0")?);
        let mut opt = Adafactor::new(titan::Parameters::new(&vs), config.clone())?;
        for step in 1..=2 {
            apply(&mut opt, &w, &b, step)?;
        }
        titan::optim::save_state(&opt, &saved)?;
    }
    // A new run from step 2's weights and the saved state continues exactly like PyTorch's.
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().var_copy("w", get("w2")?);
    let b = vs.root().var_copy("b", get("b2")?);
    let mut opt = Adafactor::new(titan::Parameters::new(&vs), config)?;
    titan::optim::load_state(&mut opt, &saved)?;
    for step in 3..=4 {
        apply(&mut opt, &w, &b, step)?;
    }
    assert!(max_diff(&w, get("w4")?)? < 1e-6 && max_diff(&b, get("b4")?)? < 1e-6);

    // A state for other parameters is a clear error.
    let other = nn::VarStore::new(Device::Cpu);
    let _ = other
        .root()
        .var_copy("w", &Tensor::zeros([3, 3], (Kind::Float, Device::Cpu)));
    let mut wrong = Adafactor::new(titan::Parameters::new(&other), AdafactorConfig::default())?;
    let err = titan::optim::load_state(&mut wrong, &saved)
        .expect_err("shape")
        .to_string();
    assert!(err.contains("w.row") && err.contains("shape"), "{err}");
    Ok(())
}

/// A store of two parameters, `w` (decays) and `b` (in the no-decay group), from given values.
fn two_params(w: &Tensor, b: &Tensor) -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = vs.root().var_copy("w", w);
    let _ = vs
        .root()
        .set_group(titan::optim::NO_DECAY_GROUP)
        .var_copy("b", b);
    vs
}

/// Step `step`'s gradients for `w` (5 × 7) and `b` (7), the same every run.
fn grads_for(step: i64) -> (Tensor, Tensor) {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    titan::device::seed_everything(100 + step as u64);
    (
        Tensor::randn([5, 7], (Kind::Float, Device::Cpu)),
        Tensor::randn([7], (Kind::Float, Device::Cpu)),
    )
}

/// Sets the gradients of `vs`'s `w` and `b` to step `step`'s and applies `update`.
fn step_with(vs: &nn::VarStore, step: i64, update: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let vars = vs.variables();
    let (w, b) = (&vars["w"], &vars["b"]);
    for mut p in [w.shallow_clone(), b.shallow_clone()] {
        p.zero_grad();
    }
    let (gw, gb) = grads_for(step);
    ((w * gw).sum(Kind::Float) + (b * gb).sum(Kind::Float)).backward();
    update()
}

fn initial() -> (Tensor, Tensor) {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    titan::device::seed_everything(7);
    (
        Tensor::randn([5, 7], (Kind::Float, Device::Cpu)),
        Tensor::randn([7], (Kind::Float, Device::Cpu)),
    )
}

fn weights(vs: &nn::VarStore) -> (Tensor, Tensor) {
    let vars = vs.variables();
    (vars["w"].detach().copy(), vars["b"].detach().copy())
}

/// titan's optimizer (`make`) and libtorch's own C++ one (`reference`) take 4 steps from the
/// same weights and gradients, weight decay off for `b` in both; the weights agree.
/// The rate changes every step, through `set_lr` and libtorch's `set_learning_rate`.
fn check_against_libtorch(
    base_lr: f64,
    make: &dyn Fn(titan::Parameters<'_>) -> titan::Result<Box<dyn Optimizer>>,
    reference: &dyn Fn() -> Result<titan::tch::COptimizer>,
) -> Result<()> {
    let (w0, b0) = initial();
    let ours = two_params(&w0, &b0);
    let mut opt = make(titan::Parameters::new(&ours))?;
    let theirs = two_params(&w0, &b0);
    let mut lib = reference()?;
    {
        let vars = theirs.variables();
        lib.add_parameters(&vars["w"], 0)?;
        lib.add_parameters(&vars["b"], titan::optim::NO_DECAY_GROUP)?;
        lib.set_weight_decay_group(titan::optim::NO_DECAY_GROUP, 0.0)?;
    }
    for step in 1..=4 {
        let lr = base_lr * [1.0, 0.5, 2.0, 0.25][step as usize - 1];
        opt.set_lr(lr);
        lib.set_learning_rate(lr)?;
        step_with(&ours, step, &mut || Ok(opt.step()?))?;
        step_with(&theirs, step, &mut || Ok(lib.step()?))?;
        let ((w, b), (rw, rb)) = (weights(&ours), weights(&theirs));
        let (dw, db) = (max_diff(&w, &rw)?, max_diff(&b, &rb)?);
        assert!(
            dw < 1e-6 && db < 1e-6,
            "step {step}: |Δw| {dw:e}, |Δb| {db:e}"
        );
        assert!(max_diff(&w, &w0)? > 1e-3, "step {step}: w did not move");
    }
    Ok(())
}

#[test]
fn fused_adamw_and_sgd_match_libtorchs_own_optimizers() -> Result<()> {
    let adamw = AdamWConfig {
        lr: 0.01,
        weight_decay: 0.3,
        ..AdamWConfig::default()
    };
    check_against_libtorch(
        0.01,
        &|p| Ok(Box::new(AdamW::new(p, adamw.clone())?)),
        &|| {
            Ok(titan::tch::COptimizer::adamw(
                0.01, 0.9, 0.95, 0.3, 1e-8, false,
            )?)
        },
    )?;
    for (momentum, dampening, nesterov) in [(0.9, 0.1, false), (0.9, 0.0, true), (0.0, 0.0, false)]
    {
        let sgd = SgdConfig {
            lr: 0.05,
            momentum,
            dampening,
            weight_decay: 0.2,
            nesterov,
        };
        check_against_libtorch(0.05, &|p| Ok(Box::new(Sgd::new(p, sgd.clone())?)), &|| {
            Ok(titan::tch::COptimizer::sgd(
                0.05, momentum, dampening, 0.2, nesterov,
            )?)
        })?;
    }
    Ok(())
}

/// 4 steps in one run equal 2 steps, a save, a new optimizer over step 2's weights, a restore
/// and 2 more; a state for other shapes fails naming the key and changes nothing.
fn check_resume(
    make: &dyn Fn(titan::Parameters<'_>) -> titan::Result<Box<dyn Optimizer>>,
) -> Result<()> {
    let (w0, b0) = initial();
    let straight = two_params(&w0, &b0);
    let mut opt = make(titan::Parameters::new(&straight))?;
    for step in 1..=4 {
        step_with(&straight, step, &mut || Ok(opt.step()?))?;
    }
    let dir = tempfile::tempdir()?;
    let saved = dir.path().join("state.safetensors");
    let first = two_params(&w0, &b0);
    let mut opt = make(titan::Parameters::new(&first))?;
    for step in 1..=2 {
        step_with(&first, step, &mut || Ok(opt.step()?))?;
    }
    titan::optim::save_state(opt.as_ref(), &saved)?;
    let (w2, b2) = weights(&first);
    let resumed = two_params(&w2, &b2);
    let mut opt = make(titan::Parameters::new(&resumed))?;
    titan::optim::load_state(opt.as_mut(), &saved)?;
    for step in 3..=4 {
        step_with(&resumed, step, &mut || Ok(opt.step()?))?;
    }
    let ((w, b), (sw, sb)) = (weights(&resumed), weights(&straight));
    assert!(max_diff(&w, &sw)? < 1e-7 && max_diff(&b, &sb)? < 1e-7);

    let other = two_params(&Tensor::zeros([3, 3], (Kind::Float, Device::Cpu)), &b0);
    let mut wrong = make(titan::Parameters::new(&other))?;
    let before = wrong.state_tensors()?;
    let err = titan::optim::load_state(wrong.as_mut(), &saved)
        .expect_err("shape")
        .to_string();
    assert!(err.contains("`w.") && err.contains("shape"), "{err}");
    for ((name, a), (_, b)) in before.iter().zip(wrong.state_tensors()?) {
        assert_eq!(max_diff(a, &b)?, 0.0, "{name} changed by a failed restore");
    }
    Ok(())
}

#[test]
fn adamw_and_sgd_state_saves_and_restores_mid_run() -> Result<()> {
    check_resume(&|p| Ok(Box::new(AdamW::new(p, AdamWConfig::default())?)))?;
    check_resume(&|p| Ok(Box::new(Sgd::new(p, SgdConfig::default())?)))
}

#[test]
fn adamw_skips_weight_decay_for_norms_and_embeddings() -> Result<()> {
    let model = small_llama()?;
    let before: Vec<(String, Tensor)> = model
        .parameters()
        .named()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    let mut opt = AdamW::new(
        model.parameters(),
        AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..AdamWConfig::default()
        },
    )?;
    // Zero gradients: Adam's step is zero, so only weight decay moves a parameter.
    let zero: Tensor = model
        .parameters()
        .named()
        .iter()
        .map(|(_, p)| (p * 0.0).sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
    zero.backward();
    opt.step()?;
    let after = model.parameters().named();
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        let no_decay = name.contains("norm") || name.contains("embed_tokens");
        let expected = if no_decay {
            old.shallow_clone()
        } else {
            old * (1.0 - 0.1 * 0.5)
        };
        let diff = max_diff(new, &expected)?;
        assert!(diff < 1e-6, "{name}: {diff:e} (no_decay {no_decay})");
    }
    Ok(())
}

fn batch(rows: i64, t: i64) -> (TokenIds, HfLabels) {
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

#[test]
fn sgd_with_momentum_trains() -> Result<()> {
    let model = small_llama()?;
    let (input, labels) = batch(4, 16);
    let mut opt = Sgd::new(
        model.parameters(),
        SgdConfig {
            lr: 0.03,
            momentum: 0.9,
            ..SgdConfig::default()
        },
    )?;
    let mut losses = Vec::new();
    for _ in 0..30 {
        opt.zero_grad()?;
        let loss = CausalLmLoss.loss(&model.forward(&input)?, &labels)?;
        loss.backward();
        opt.step()?;
        losses.push(loss.double_value(&[]));
    }
    assert!(losses[29] < losses[0] * 0.5, "{losses:?}");
    Ok(())
}

fn grads(model: &Llama) -> Vec<Tensor> {
    model
        .parameters()
        .named()
        .iter()
        .map(|(_, p)| p.grad().copy())
        .collect()
}

fn zero_grads(model: &Llama) {
    for (_, mut p) in model.parameters().named() {
        p.zero_grad();
    }
}

#[test]
fn four_micro_batches_of_8_give_the_gradient_of_one_batch_of_32() -> Result<()> {
    let model = small_llama()?;
    let params = model.parameters().named();
    let (input, labels) = batch(32, 16);
    // Forward and backward of one slice of rows; returns its loss sum and token count.
    let step_on = |rows: (i64, i64)| -> titan::Result<(Tensor, Tensor)> {
        let x = TokenIds(input.0.narrow(0, rows.0, rows.1));
        let y = HfLabels(labels.0.narrow(0, rows.0, rows.1));
        model.forward_backward(&x, &mut |logits| CausalLmLoss.loss_sum(logits, &y))
    };
    let loss_of = |rows: (i64, i64)| -> titan::Result<(Tensor, Tensor)> {
        let x = TokenIds(input.0.narrow(0, rows.0, rows.1));
        let y = HfLabels(labels.0.narrow(0, rows.0, rows.1));
        CausalLmLoss.loss_sum(&model.forward(&x)?, &y)
    };

    let (big_loss, big_count) = accumulate_gradients(&params, 1, |_| step_on((0, 32)))?;
    let big = grads(&model);
    zero_grads(&model);
    let (micro_loss, micro_count) =
        accumulate_gradients(&params, 4, |i| step_on((8 * i as i64, 8)))?;
    let micro = grads(&model);

    assert_eq!(big_count.double_value(&[]), micro_count.double_value(&[]));
    assert!((big_loss.double_value(&[]) - micro_loss.double_value(&[])).abs() < 1e-5);
    for (a, b) in big.iter().zip(&micro) {
        assert!(
            a.allclose(b, 1e-4, 1e-6, false),
            "max diff {:e}",
            max_diff(a, b)?
        );
    }

    // Averaging the micro-batches' own means instead weights tokens unequally: not the same.
    zero_grads(&model);
    for i in 0..4 {
        let (sum, count) = loss_of((8 * i, 8))?;
        (sum / count.clamp_min(1) / 4.0).backward();
    }
    let naive = grads(&model);
    let worst = big
        .iter()
        .zip(&naive)
        .map(|(a, b)| max_diff(a, b))
        .collect::<Result<Vec<f64>>>()?
        .into_iter()
        .fold(0.0, f64::max);
    assert!(
        worst > 1e-5,
        "padding must make the naive mean differ ({worst:e})"
    );
    Ok(())
}

fn flat_grads(model: &Llama) -> Tensor {
    let grads: Vec<Tensor> = grads(model).iter().map(|g| g.flatten(0, -1)).collect();
    Tensor::cat(&grads, 0)
}

#[test]
fn bf16_compute_keeps_f32_master_weights_and_close_gradients() -> Result<()> {
    let full = small_llama()?;
    let mixed = small_llama()?.with_compute_kind(Kind::BFloat16)?;
    let (input, labels) = batch(4, 16);
    let mut losses = Vec::new();
    for model in [&full, &mixed] {
        let logits = model.forward(&input)?;
        let loss = CausalLmLoss.loss(&logits, &labels)?;
        assert_eq!(loss.kind(), Kind::Float, "the loss computes in f32");
        loss.backward();
        losses.push(loss.double_value(&[]));
    }
    assert_eq!(mixed.forward(&input)?.kind(), Kind::BFloat16);
    for (name, p) in mixed.parameters().named() {
        assert_eq!(p.kind(), Kind::Float, "{name} is an f32 master weight");
        assert_eq!(p.grad().kind(), Kind::Float, "{name}'s gradient is f32");
    }
    assert!(
        (losses[0] - losses[1]).abs() < 0.02 * losses[0],
        "{losses:?}"
    );
    let (a, b) = (flat_grads(&full), flat_grads(&mixed));
    let cosine = (&a * &b).sum(Kind::Float).double_value(&[])
        / (a.norm().double_value(&[]) * b.norm().double_value(&[]));
    assert!(cosine > 0.99, "gradient cosine {cosine}");
    Ok(())
}

/// Causal-LM loss that turns NaN from its `at`-th call on.
struct NanFrom {
    calls: std::cell::Cell<usize>,
    at: usize,
}

impl Loss<HfLabels> for NanFrom {
    fn loss_sum(&self, logits: &Tensor, labels: &HfLabels) -> titan::Result<(Tensor, Tensor)> {
        let (sum, count) = CausalLmLoss.loss_sum(logits, labels)?;
        self.calls.set(self.calls.get() + 1);
        let sum = if self.calls.get() >= self.at {
            sum * f64::NAN
        } else {
            sum
        };
        Ok((sum, count))
    }
}

/// Trains `model` under `loss` on a small packed token stream with AdamW and the default
/// warmup, staged or eager; returns the run's outcome and its `metrics.jsonl`.
fn small_run<L: Loss<HfLabels>>(
    model: &Llama,
    loss: &L,
    config: titan::TrainerConfig,
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
    let outcome = trainer.fit(
        model,
        &mut train,
        None::<&mut titan::data::PackedLoader>,
        loss,
        &mut opt,
        &mut sched,
    );
    drop(trainer);
    Ok((outcome, std::fs::read_to_string(&metrics)?))
}

fn run_until_nan(at: usize, accum: usize) -> Result<(String, String)> {
    let loss = NanFrom {
        calls: std::cell::Cell::new(0),
        at,
    };
    let config = titan::TrainerConfig {
        steps: 10,
        log_every: 5,
        grad_accum_steps: accum,
        ..titan::TrainerConfig::default()
    };
    let (outcome, metrics) = small_run(&small_llama()?, &loss, config, false)?;
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
fn activation_checkpointing_gives_the_same_loss_and_gradients() -> Result<()> {
    let plain = small_llama()?;
    let recomputed = small_llama()?.with_activation_checkpointing(true);
    let (input, labels) = batch(4, 16);
    let mut sums = Vec::new();
    for model in [&plain, &recomputed] {
        let (sum, count) =
            model.forward_backward(&input, &mut |logits| CausalLmLoss.loss_sum(logits, &labels))?;
        sums.push((sum.double_value(&[]), count.double_value(&[])));
    }
    assert!((sums[0].0 - sums[1].0).abs() < 1e-4, "{sums:?}");
    assert_eq!(sums[0].1, sums[1].1);
    for (((name, a), (_, b)), _) in plain
        .parameters()
        .named()
        .iter()
        .zip(recomputed.parameters().named().iter())
        .zip(0..)
    {
        let (ga, gb) = (a.grad(), b.grad());
        assert!(ga.defined() && gb.defined(), "{name} has no gradient");
        assert!(
            ga.allclose(&gb, 1e-4, 1e-6, false),
            "{name}: {:e}",
            max_diff(&ga, &gb)?
        );
    }
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
    let model = small_llama_on(device)?;
    let config = titan::TrainerConfig {
        steps,
        log_every: 1,
        grad_accum_steps: 2,
        cuda_graph: graph,
        ..titan::TrainerConfig::default()
    };
    let (outcome, metrics) = small_run(&model, &CausalLmLoss, config, staged)?;
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

#[test]
fn adamw_leaves_a_parameter_without_gradient_alone_like_libtorch() -> Result<()> {
    // Step 1 gives only `w` a gradient: `b` must neither move nor count the step (its bias
    // correction starts at its own first step), as in libtorch's AdamW. Both decay, so they
    // share one fused group and its step-count buffer.
    let (w0, b0) = initial();
    let both_decay = |w: &Tensor, b: &Tensor| {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().var_copy("w", w);
        let _ = vs.root().var_copy("b", b);
        vs
    };
    let ours = both_decay(&w0, &b0);
    let mut opt = AdamW::new(
        titan::Parameters::new(&ours),
        AdamWConfig {
            lr: 0.01,
            weight_decay: 0.3,
            ..AdamWConfig::default()
        },
    )?;
    let theirs = both_decay(&w0, &b0);
    let mut lib = titan::tch::COptimizer::adamw(0.01, 0.9, 0.95, 0.3, 1e-8, false)?;
    {
        let vars = theirs.variables();
        lib.add_parameters(&vars["w"], 0)?;
        lib.add_parameters(&vars["b"], 0)?;
    }
    for step in 1..=3 {
        let (gw, gb) = grads_for(step);
        for vs in [&ours, &theirs] {
            let vars = vs.variables();
            let (w, b) = (&vars["w"], &vars["b"]);
            for mut p in [w.shallow_clone(), b.shallow_clone()] {
                p.zero_grad();
            }
            let mut loss = (w * &gw).sum(Kind::Float);
            if step > 1 {
                loss += (b * &gb).sum(Kind::Float);
            }
            loss.backward();
        }
        opt.step()?;
        lib.step()?;
        let ((w, b), (rw, rb)) = (weights(&ours), weights(&theirs));
        assert!(
            max_diff(&w, &rw)? < 1e-6 && max_diff(&b, &rb)? < 1e-6,
            "step {step}"
        );
        if step == 1 {
            assert_eq!(max_diff(&b, &b0)?, 0.0, "b moved without a gradient");
        }
    }
    let state: std::collections::HashMap<String, Tensor> =
        opt.state_tensors()?.into_iter().collect();
    assert_eq!(state["w.step"].double_value(&[]), 3.0);
    assert_eq!(state["b.step"].double_value(&[]), 2.0);
    Ok(())
}
