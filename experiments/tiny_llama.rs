//! tiny_llama: the Tiny Titan recipe (a 4.4M-parameter Llama 3, 2K byte-level BPE, sequences of
//! 512, AdamW 1e-3 with warmup and cosine decay) on titan's built-in stories or `--data FILE`.

use titan::prelude::*;

/// The Tiny Titan experiment; `--print-config` shows its settings and construction order.
#[experiment]
pub struct TinyLlama {
    #[config(TrainingConfig::tiny_titan())]
    training: TrainingConfig,
    #[config(LlamaConfig::tiny())]
    llama: LlamaConfig,
    #[config(BpeConfig::default())]
    bpe: BpeConfig,
    #[config(AdamWConfig { lr: 1e-3, ..AdamWConfig::default() })]
    adamw: AdamWConfig,
    #[config(WarmupConfig {
        warmup_steps: (training.steps / 20).clamp(1, 500),
        total_steps: training.steps,
        decay: Decay::Cosine,
        min_lr_ratio: 0.1,
        decay_ratio: None,
    })]
    schedule: WarmupConfig,
    #[config(DatasetConfig::default())]
    dataset: DatasetConfig,

    #[build(LocalEnv::from_env()?)]
    dist: LocalEnv,
    // Dataloaders take `&dims`, which only the distributed environment can produce.
    #[build(ParallelDims::new(&dist, training.device()?)?)]
    dims: ParallelDims,
    // `--data` takes a `.txt`, `.jsonl` or `.parquet` file, a directory or a glob of shards.
    #[build(Corpus::for_run(&training, &dataset)?)]
    corpus: Corpus,
    // BPE merges settle long before the corpus ends: a bounded sample keeps start-up short.
    #[build(BpeTokenizer::train_or_load(
        &BpeConfig { path: training.output_dir("tiny_llama").join(&bpe.path), ..bpe.clone() },
        corpus.train.sample(dataset.tokenizer_sample)?,
    )?)]
    tokenizer: BpeTokenizer,
    // bf16 compute with f32 master weights on CUDA, f32 on CPU (`training.precision`);
    // `training.activation_checkpointing` recomputes each block in backward.
    #[build(Llama::new(llama.with_tokenizer(&tokenizer), dims.device())?
        .with_compute_kind(training.compute_kind()?)?
        .with_activation_checkpointing(training.activation_checkpointing))]
    model: Llama,
    // Read, shuffled, tokenized and packed on a background thread, a few batches ahead.
    #[build({
        check_fits(&tokenizer, &model, training.seq_len)?;
        let docs = Documents::new(&dims, corpus.train.clone(), dataset.shuffle_buffer, training.seed)?;
        TokenLoader::new(&dims, docs, tokenizer.clone(), dataset.layout, training.seq_len, training.batch_size)?
            .with_prefetch(dataset.prefetch)
    })]
    train_data: TokenLoader<Documents, BpeTokenizer, HfConvention>,
    #[build({
        let docs = Documents::new(&dims, corpus.val.clone(), 0, training.seed)?;
        TokenLoader::new(&dims, docs, tokenizer.clone(), dataset.layout, training.seq_len, training.batch_size)?
    })]
    val_data: TokenLoader<Documents, BpeTokenizer, HfConvention>,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), adamw.clone())?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, schedule.clone())?)]
    lr_scheduler: Warmup<AdamW>,
}

titan::main!(TinyLlama);
