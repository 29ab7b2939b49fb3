//! Gradients: token-weighted accumulation of 4 micro-batches of 8 equals one batch of 32 with
//! padding present, bf16 compute keeps f32 master weights and close gradients, and activation
//! checkpointing gives the same loss and gradients.

mod common;

use anyhow::Result;
use common::{batch, max_diff, small_llama};
use titan::data::{HfLabels, TokenIds};
use titan::tch::{Kind, Tensor};
use titan::trainer::accumulate_gradients;
use titan::{CausalLmLoss, Llama, Loss, Model};

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
        model.forward_backward(&x, &mut |logits: &Tensor| CausalLmLoss.loss_sum(logits, &y))
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

#[test]
fn activation_checkpointing_gives_the_same_loss_and_gradients() -> Result<()> {
    let plain = small_llama()?;
    let recomputed = small_llama()?.with_activation_checkpointing(true);
    let (input, labels) = batch(4, 16);
    let mut sums = Vec::new();
    for model in [&plain, &recomputed] {
        let (sum, count) = model.forward_backward(&input, &mut |logits: &Tensor| {
            CausalLmLoss.loss_sum(logits, &labels)
        })?;
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
