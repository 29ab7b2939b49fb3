//! Adafactor swapped in, with a warmup-stable-decay schedule, token-weighted gradient
//! accumulation and Titan-convention (pre-shifted) padded batches streamed from the built-in
//! stories: every choice is a field of this file, and nothing is registered anywhere.

use titan::cli::TrainArgs;
use titan::data::StoryConfig;
use titan::prelude::*;
use titan::tch::Device;

/// A tiny Llama trained with Adafactor on padded, pre-shifted batches.
#[experiment]
pub struct AdafactorExperiment {
    #[config(TrainingConfig {
        steps: 4, batch_size: 2, seq_len: 32, grad_accum_steps: 2, samples: 0,
        device: "cpu".into(), ..TrainingConfig::default()
    })]
    training: TrainingConfig,
    #[config(AdafactorConfig::default())]
    adafactor: AdafactorConfig,
    #[config(WarmupConfig {
        warmup_steps: 1, total_steps: training.steps, decay: Decay::Linear,
        decay_ratio: Some(0.5), ..WarmupConfig::default()
    })]
    schedule: WarmupConfig,

    #[build(LocalEnv::single())]
    dist: LocalEnv,
    #[build(ParallelDims::new(&dist, Device::Cpu)?)]
    dims: ParallelDims,
    #[build(Corpus::stories(&StoryConfig { seed: 1, num_stories: 200 }))]
    corpus: Corpus,
    #[build(BpeTokenizer::train(
        &BpeConfig {
            vocab_size: 300, max_len: 64,
            path: training.output_dir().join("tokenizer.json"),
            ..BpeConfig::default()
        },
        corpus.train.sample(200)?,
    )?)]
    tokenizer: BpeTokenizer,
    #[build(Llama::new(LlamaConfig {
        hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
        num_attention_heads: 2, num_key_value_heads: 1, ..LlamaConfig::tiny()
    }.with_tokenizer(&tokenizer), dims.device())?)]
    model: Llama,
    #[build({
        let docs = Documents::new(&dims, corpus.train.clone(), 16, training.seed)?;
        TokenLoader::new(&dims, docs, tokenizer.clone(), Layout::Padded, training.seq_len, training.batch_size)?
    })]
    train_data: TokenLoader<Documents, BpeTokenizer, TitanConvention>,
    #[build(ShiftedLoss)]
    loss: ShiftedLoss,
    #[build(Adafactor::new(model.parameters(), adafactor.clone())?)]
    optimizer: Adafactor,
    #[build(Warmup::new(&optimizer, schedule.clone())?)]
    lr_scheduler: Warmup<Adafactor>,
}

pub fn main() {
    let dir = std::env::temp_dir().join(format!("titan-ui-adafactor-{}", std::process::id()));
    let dir_flag = dir.display().to_string();
    let args =
        TrainArgs::try_parse_from(["adafactor", "--output-dir", &dir_flag, "--log-every", "1"])
            .expect("flags");
    titan::experiment::run::<AdafactorExperiment>(args).expect("trains with Adafactor");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 4, "{metrics}");
    let _ = std::fs::remove_dir_all(dir);
}
