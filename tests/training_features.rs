//! Training features: Adafactor matches `torch.optim.Adafactor`, AdamW skips weight decay for
//! norms and embeddings, SGD with momentum trains, token-weighted accumulation of 4
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
        Device::Cpu,
    )?)
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok((a - b).abs().max().double_value(&[]))
}

#[test]
fn adafactor_matches_pytorch() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adafactor.safetensors");
    let fixture: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&path)?.into_iter().collect();
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
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adafactor.safetensors");
    let fixture: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&path)?.into_iter().collect();
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

    // A state for other parameters, and an optimizer that cannot export, are clear errors.
    let other = nn::VarStore::new(Device::Cpu);
    let _ = other
        .root()
        .var_copy("w", &Tensor::zeros([3, 3], (Kind::Float, Device::Cpu)));
    let mut wrong = Adafactor::new(titan::Parameters::new(&other), AdafactorConfig::default())?;
    let err = titan::optim::load_state(&mut wrong, &saved)
        .expect_err("shape")
        .to_string();
    assert!(err.contains("w.row") && err.contains("shape"), "{err}");
    let model = small_llama()?;
    let adamw = AdamW::new(model.parameters(), AdamWConfig::default())?;
    let err = titan::optim::save_state(&adamw, &dir.path().join("x")).expect_err("adamw");
    assert!(err.to_string().contains("libtorch"), "{err}");
    Ok(())
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

fn run_until_nan(at: usize, accum: usize) -> Result<(String, String)> {
    let model = small_llama()?;
    let dims = titan::ParallelDims::new(&titan::LocalEnv::single(), Device::Cpu)?;
    let tokens: Vec<u32> = (0..4096).map(|i| (i * 7 % 50) as u32).collect();
    let mut train = titan::data::PackedLoader::new(&dims, tokens, 16, 2, 0, true)?;
    let mut opt = AdamW::new(model.parameters(), AdamWConfig::default())?;
    let mut sched = titan::Warmup::new(&opt, titan::WarmupConfig::default())?;
    let dir = tempfile::tempdir()?;
    let metrics = dir.path().join("metrics.jsonl");
    let mut trainer = titan::Trainer::new(titan::TrainerConfig {
        steps: 10,
        log_every: 5,
        grad_accum_steps: accum,
        ..titan::TrainerConfig::default()
    })
    .quiet()
    .with_sink(titan::metrics::JsonlSink::create(&metrics)?);
    let loss = NanFrom {
        calls: std::cell::Cell::new(0),
        at,
    };
    let err = trainer
        .fit(
            &model,
            &mut train,
            None::<&mut titan::data::PackedLoader>,
            &loss,
            &mut opt,
            &mut sched,
        )
        .expect_err("a NaN loss must stop the run")
        .to_string();
    drop(trainer);
    Ok((err, std::fs::read_to_string(&metrics)?))
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
