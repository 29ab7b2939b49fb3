//! tiny_llama: the Tiny Titan recipe (4.4M-parameter Llama, 2K BPE, seq 512, AdamW 1e-3) on the
//! built-in story corpus, or on `--data FILE`. Wired by hand until `#[experiment]` lands.

use anyhow::{Context, Result};
use clap::Parser;
use titan::cli::TrainArgs;
use titan::data::{Corpus, PackedLoader, StoryConfig, pack_documents};
use titan::lr::Decay;
use titan::metrics::JsonlSink;
use titan::model::{GenerateConfig, check_fits, generate};
use titan::tch::Device;
use titan::{
    AdamW, AdamWConfig, BpeConfig, BpeTokenizer, CausalLmLoss, DistributedEnvironment, Llama,
    LlamaConfig, LocalEnv, Model, Tokenizer, Trainer, TrainerConfig, Validator, Warmup,
    WarmupConfig,
};

const NAME: &str = "tiny_llama";
const SEQ_LEN: usize = 512;

fn main() -> Result<()> {
    let args = TrainArgs::parse();
    let dist = LocalEnv::from_env()?;
    let device = titan::device::select(args.device.as_deref())?;
    titan::device::seed_everything(args.seed);
    // The Tiny Titan recipe (batch 32) on a GPU; a CPU default that finishes in minutes.
    let (default_steps, default_batch) = match device {
        Device::Cpu => (250, 8),
        _ => (6500, 32),
    };
    let steps = args.steps.unwrap_or(default_steps);
    let batch_size = args.batch_size.unwrap_or(default_batch);
    let out = args.output_dir_or(NAME);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let corpus = match &args.data {
        Some(path) => Corpus::from_files(path, args.val_data.as_deref())?,
        // Enough generated stories (about 190 tokens each) that the run sees each about once.
        None => Corpus::stories(&StoryConfig {
            seed: args.seed,
            num_stories: (steps as usize * batch_size * SEQ_LEN / 190).clamp(20_000, 400_000),
        }),
    };
    eprintln!("data: {}", corpus.source);
    let tokenizer = BpeTokenizer::train_or_load(
        &BpeConfig {
            path: out.join("tokenizer.json"),
            ..BpeConfig::default()
        },
        // BPE merges settle long before the corpus ends; a bounded sample keeps start-up short.
        corpus.train.iter().take(20_000),
    )?;

    let model = Llama::new(LlamaConfig::tiny().with_tokenizer(&tokenizer), device)?;
    check_fits(&tokenizer, &model, SEQ_LEN)?;
    eprintln!(
        "model: Llama, {:.2}M parameters on {device:?} (rank {} of {})",
        model.parameters().count() as f64 / 1e6,
        dist.rank(),
        dist.world_size()
    );

    let train_tokens = pack_documents(&tokenizer, &corpus.train)?;
    let val_tokens = pack_documents(&tokenizer, &corpus.val)?;
    let mut train = PackedLoader::new(train_tokens, SEQ_LEN, batch_size, args.seed, true, device)?;
    let val = PackedLoader::new(val_tokens, SEQ_LEN, batch_size, args.seed, false, device)?;
    let eval_batches = val.batches_per_epoch().min(8);
    let mut validator = Validator::new(val, eval_batches)?;
    eprintln!(
        "train: {} tokens, {} rows of {SEQ_LEN}; {steps} steps of {batch_size} rows",
        train.num_tokens(),
        train.num_rows()
    );

    let mut optimizer = AdamW::new(model.parameters(), AdamWConfig::default())?;
    let mut scheduler = Warmup::new(
        &optimizer,
        WarmupConfig {
            warmup_steps: (steps / 20).clamp(1, 500),
            total_steps: steps,
            decay: Decay::Cosine,
            min_lr_ratio: 0.1,
        },
    )?;
    let mut trainer = Trainer::new(TrainerConfig {
        steps,
        log_every: args.log_every.unwrap_or(10),
        eval_every: args.eval_every.unwrap_or(0),
        ..TrainerConfig::default()
    })
    .with_sink(JsonlSink::create(out.join("metrics.jsonl"))?);
    let summary = trainer.fit(
        &model,
        &mut train,
        Some(&mut validator),
        &CausalLmLoss,
        &mut optimizer,
        &mut scheduler,
    )?;
    eprintln!(
        "done: {} steps in {:.1}s, last loss {:.4}, val loss {:.4}",
        summary.steps,
        summary.elapsed.as_secs_f64(),
        summary.last_loss,
        summary.val_loss.unwrap_or(f64::NAN)
    );

    let prompt: Vec<i64> = tokenizer
        .encode("Once upon a time")?
        .into_iter()
        .map(i64::from)
        .collect();
    let eos = tokenizer.eos_id().map(i64::from);
    for i in 0..args.samples {
        let ids = generate(&model, &prompt, eos, &GenerateConfig::default())?;
        let ids: Vec<u32> = prompt.iter().chain(&ids).map(|&t| t as u32).collect();
        println!("--- sample {} ---\n{}", i + 1, tokenizer.decode(&ids)?);
    }
    Ok(())
}
