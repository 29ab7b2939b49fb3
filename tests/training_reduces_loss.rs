//! End to end through the library: a small Llama trained on a few stories with AdamW, warmup
//! and clipping gets clearly better than chance, and its validation loss is deterministic.

use anyhow::Result;
use titan::data::{Corpus, Documents, HfConvention, Layout, StoryConfig, TokenLoader};
use titan::lr::Decay;
use titan::tch::Device;
use titan::{
    AdamW, AdamWConfig, BpeConfig, BpeTokenizer, CausalLmLoss, Llama, LlamaConfig, Model, Trainer,
    TrainingConfig, Warmup, WarmupConfig,
};
use titan::{Dataloader, LocalEnv, ParallelDims};

#[test]
fn loss_falls_well_below_chance() -> Result<()> {
    titan::device::seed_everything(0);
    let corpus = Corpus::stories(&StoryConfig {
        seed: 0,
        num_stories: 200,
    });
    let dir = tempfile::tempdir()?;
    let tokenizer = BpeTokenizer::train_or_load(
        &BpeConfig {
            vocab_size: 400,
            max_len: 64,
            path: dir.path().join("tok.json"),
            ..BpeConfig::default()
        },
        corpus.train.sample(200)?,
    )?;
    let config = LlamaConfig {
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        ..LlamaConfig::tiny()
    }
    .with_tokenizer(&tokenizer);
    let mut model = Llama::new(config, Device::Cpu)?;
    let dims = ParallelDims::new(&LocalEnv::single(), Device::Cpu)?;
    // Streamed, tokenized and packed on the loader's thread; validation in order.
    let mut train: TokenLoader<_, _, HfConvention> = TokenLoader::new(
        &dims,
        Documents::new(&dims, corpus.train.clone(), 64, 0)?,
        tokenizer.clone(),
        Layout::Packed,
        64,
        8,
    )?;
    let mut val: TokenLoader<_, _, HfConvention> = TokenLoader::new(
        &dims,
        Documents::new(&dims, corpus.val.clone(), 0, 0)?,
        tokenizer.clone(),
        Layout::Packed,
        64,
        4,
    )?;
    let val_start = val.state();
    let mut optimizer = AdamW::new(
        model.parameters(),
        AdamWConfig {
            lr: 5e-3,
            ..AdamWConfig::default()
        },
    )?;
    let mut scheduler = Warmup::new(
        &optimizer,
        WarmupConfig {
            warmup_steps: 5,
            total_steps: 200,
            decay: Decay::Cosine,
            min_lr_ratio: 0.1,
            decay_ratio: None,
        },
    )?;
    let mut trainer = Trainer::new(TrainingConfig {
        steps: 200,
        log_every: 10,
        eval_batches: 2,
        ..TrainingConfig::default()
    })
    .quiet();
    let summary = trainer.run(
        titan::experiment::wire(&mut model)
            .train_data(&mut train)
            .loss(&mut CausalLmLoss)
            .val_data(&mut val)?
            .optimizer(&mut optimizer)
            .lr_scheduler(&mut scheduler),
    )?;
    let chance = (model.vocab_size() as f64).ln();
    let val_loss = summary.val_loss.expect("validator given");
    println!(
        "chance {chance:.3}, last train loss {:.3}, val loss {val_loss:.3}",
        summary.last_loss
    );
    assert!(
        summary.last_loss < chance - 2.0,
        "train loss {} vs chance {chance}",
        summary.last_loss
    );
    assert!(
        val_loss < chance - 2.0,
        "val loss {val_loss} vs chance {chance}"
    );
    // Evaluating the same batches again gives the same number: no dropout, no state carried.
    val.load_state(val_start)?;
    let (again, _) = titan::trainer::evaluate(&model, &mut val, &CausalLmLoss, 2)?;
    assert!((again - val_loss).abs() < 1e-6, "{again} vs {val_loss}");
    Ok(())
}
