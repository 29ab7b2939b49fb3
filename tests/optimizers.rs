//! Optimizers: Adafactor matches `torch.optim.Adafactor` and honours the no-decay group, fused
//! AdamW and SGD match libtorch's own optimizers, every optimizer's state saves and restores
//! mid-run, AdamW skips weight decay for norms and embeddings and leaves a parameter without a
//! gradient alone, and SGD with momentum trains.

mod common;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use common::{RNG, batch, max_diff, small_llama};
use titan::tch::{Device, Kind, Tensor, nn};
use titan::{
    Adafactor, AdafactorConfig, AdamW, AdamWConfig, CausalLmLoss, Loss, Model, Optimizer,
    ParamGroup, Sgd, SgdConfig, Stateful,
};

/// Builds an optimizer over parameters.
type MakeOptimizer = dyn Fn(titan::Parameters) -> titan::Result<Box<dyn StatefulOptimizer>>;

/// An optimizer with its checkpoint state, behind one pointer.
trait StatefulOptimizer: Optimizer + Stateful {}
impl<T: Optimizer + Stateful> StatefulOptimizer for T {}

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

/// A store of two parameters, `w` and `b`, from given values.
fn two_params(w: &Tensor, b: &Tensor) -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = vs.root().var_copy("w", w);
    let _ = vs.root().var_copy("b", b);
    vs
}

/// `vs`'s parameters with `w` taking weight decay and `b` in the no-decay group.
fn decay_w_not_b(vs: &nn::VarStore) -> titan::Parameters {
    titan::Parameters::grouped(vs, |name| {
        if name == "b" {
            ParamGroup::NoDecay
        } else {
            ParamGroup::Decay
        }
    })
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
    make: &dyn Fn(titan::Parameters) -> titan::Result<Box<dyn StatefulOptimizer>>,
    reference: &dyn Fn() -> Result<titan::tch::COptimizer>,
) -> Result<()> {
    let (w0, b0) = initial();
    let ours = two_params(&w0, &b0);
    let mut opt = make(decay_w_not_b(&ours))?;
    let theirs = two_params(&w0, &b0);
    let mut lib = reference()?;
    {
        let vars = theirs.variables();
        lib.add_parameters(&vars["w"], 0)?;
        // libtorch's group 1 is titan's no-decay group here.
        lib.add_parameters(&vars["b"], 1)?;
        lib.set_weight_decay_group(1, 0.0)?;
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
    make: &dyn Fn(titan::Parameters) -> titan::Result<Box<dyn StatefulOptimizer>>,
) -> Result<()> {
    let (w0, b0) = initial();
    let straight = two_params(&w0, &b0);
    let mut opt = make(decay_w_not_b(&straight))?;
    for step in 1..=4 {
        step_with(&straight, step, &mut || Ok(opt.step()?))?;
    }
    let dir = tempfile::tempdir()?;
    let saved = dir.path().join("state.safetensors");
    let first = two_params(&w0, &b0);
    let mut opt = make(decay_w_not_b(&first))?;
    for step in 1..=2 {
        step_with(&first, step, &mut || Ok(opt.step()?))?;
    }
    titan::optim::save_state(opt.as_ref(), &saved)?;
    let (w2, b2) = weights(&first);
    let resumed = two_params(&w2, &b2);
    let mut opt = make(decay_w_not_b(&resumed))?;
    titan::optim::load_state(opt.as_mut(), &saved)?;
    for step in 3..=4 {
        step_with(&resumed, step, &mut || Ok(opt.step()?))?;
    }
    let ((w, b), (sw, sb)) = (weights(&resumed), weights(&straight));
    assert!(max_diff(&w, &sw)? < 1e-7 && max_diff(&b, &sb)? < 1e-7);

    let other = two_params(&Tensor::zeros([3, 3], (Kind::Float, Device::Cpu)), &b0);
    let mut wrong = make(decay_w_not_b(&other))?;
    let before = wrong.state_dict()?.tensors;
    let err = titan::optim::load_state(wrong.as_mut(), &saved)
        .expect_err("shape")
        .to_string();
    assert!(err.contains("`w.") && err.contains("shape"), "{err}");
    for ((name, a), (_, b)) in before.iter().zip(wrong.state_dict()?.tensors) {
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

#[test]
fn adafactor_honours_the_no_decay_group() -> Result<()> {
    // Zero gradients: Adafactor's update (the gradient scaled by the rsqrt of its second-moment
    // estimate) is exactly zero, so only decoupled weight decay moves a parameter.
    let (w0, b0) = initial();
    let step_on_zero_grads =
        |params: &dyn Fn(&nn::VarStore) -> titan::Parameters| -> Result<(Tensor, Tensor)> {
            let vs = two_params(&w0, &b0);
            let mut opt = Adafactor::new(
                params(&vs),
                AdafactorConfig {
                    weight_decay: 0.5,
                    ..AdafactorConfig::default()
                },
            )?;
            let vars = vs.variables();
            ((&vars["w"] * 0.0).sum(Kind::Float) + (&vars["b"] * 0.0).sum(Kind::Float)).backward();
            opt.step()?;
            Ok(weights(&vs))
        };
    // One step of decay at the default rate 1e-2.
    let decayed = |p: &Tensor| p * (1.0 - 0.01 * 0.5);

    let (w, b) = step_on_zero_grads(&decay_w_not_b)?;
    assert_eq!(
        max_diff(&b, &b0)?,
        0.0,
        "b is in the no-decay group but moved"
    );
    let dw = max_diff(&w, &decayed(&w0))?;
    assert!(dw < 1e-7, "w: |Δ| {dw:e} from one step of weight decay");

    // With every parameter in the decay group, b decays too.
    let (_, b) = step_on_zero_grads(&titan::Parameters::new)?;
    let db = max_diff(&b, &decayed(&b0))?;
    assert!(db < 1e-7, "b: |Δ| {db:e} from one step of weight decay");
    assert!(
        max_diff(&b, &b0)? > 1e-4,
        "b did not move in the decay group"
    );
    Ok(())
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
        opt.state_dict()?.tensors.into_iter().collect();
    assert_eq!(state["w.step"].double_value(&[]), 3.0);
    assert_eq!(state["b.step"].double_value(&[]), 2.0);
    Ok(())
}

/// Every optimizer titan ships skips a step on the device when `found_inf` is 1: after a
/// finite step, a step with NaN gradients changes no weight and no state tensor (AdamW, SGD
/// with momentum, Adafactor).
#[test]
fn a_found_inf_step_changes_no_weight_and_no_state() -> Result<()> {
    let makers: [(&str, &MakeOptimizer); 3] = [
        ("AdamW", &|p| {
            Ok(Box::new(AdamW::new(p, AdamWConfig::default())?))
        }),
        ("SGD", &|p| {
            let config = SgdConfig {
                momentum: 0.9,
                weight_decay: 0.01,
                ..SgdConfig::default()
            };
            Ok(Box::new(Sgd::new(p, config)?))
        }),
        ("Adafactor", &|p| {
            Ok(Box::new(Adafactor::new(p, AdafactorConfig::default())?))
        }),
    ];
    let (w0, b0) = initial();
    for (name, make) in makers {
        let vs = two_params(&w0, &b0);
        let mut opt = make(decay_w_not_b(&vs))?;
        step_with(&vs, 1, &mut || Ok(opt.step()?))?;
        let (w1, b1) = weights(&vs);
        let state: Vec<Tensor> = opt
            .state_dict()?
            .tensors
            .into_iter()
            .map(|(_, t)| t.copy())
            .collect();
        // NaN gradients, skipped on the device.
        let vars = vs.variables();
        for mut p in [vars["w"].shallow_clone(), vars["b"].shallow_clone()] {
            p.zero_grad();
            (&p * f64::NAN).sum(Kind::Float).backward();
        }
        let inf = Tensor::ones([], (Kind::Float, Device::Cpu));
        ensure!(opt.step_unless(&inf)?, "{name} cannot skip");
        let (w, b) = weights(&vs);
        ensure!(w.equal(&w1) && b.equal(&b1), "{name} moved the weights");
        let after: Vec<Tensor> = opt
            .state_dict()?
            .tensors
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        for (i, (a, s)) in after.iter().zip(&state).enumerate() {
            // Adafactor's and SGD's step counts live on the host; the tensors must not move.
            ensure!(
                a.equal(s) || a.numel() == 1,
                "{name}: state tensor {i} changed"
            );
        }
        let finite = weights(&vs).0.isfinite().all().int64_value(&[]) == 1;
        ensure!(finite, "{name}: NaN reached the weights");
    }
    Ok(())
}
