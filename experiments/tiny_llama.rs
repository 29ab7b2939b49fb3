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
    // torchtitan's `[parallelism]` axes; data parallel over every process by default.
    #[config(ParallelConfig::default())]
    parallelism: ParallelConfig,

    // torchrun's ranks (or `--nproc-per-node N`) in torch's process group; one process
    // without them.
    #[build(C10dEnv::from_env(training.device()?, &parallelism)?)]
    dist: C10dEnv,
    // Dataloaders take `&dims`, which only the distributed environment can produce.
    #[build(ParallelDims::with_config(&dist, &parallelism, training.device()?)?)]
    dims: ParallelDims,
    // `--data` takes a `.txt`, `.jsonl` or `.parquet` file, a directory or a glob of shards;
    // without it, enough built-in stories for the run to see each about once.
    #[build(Corpus::new(
        training.data.as_deref(),
        training.val_data.as_deref(),
        &dataset,
        StoryConfig::for_tokens(training.seed, training.tokens()),
    )?)]
    corpus: Corpus,
    // BPE merges settle long before the corpus ends: a bounded sample keeps start-up short.
    #[build(BpeTokenizer::train_or_load(
        &bpe.in_dir(&training.output_dir()),
        corpus.train.sample_of(dataset.tokenizer_sample),
    )?)]
    tokenizer: BpeTokenizer,
    // bf16 compute with f32 master weights on CUDA, f32 on CPU (`training.precision`);
    // `training.activation_checkpointing` recomputes each block in backward.
    #[build(Llama::new(llama.with_tokenizer(&tokenizer), dims.device())?
        .with_compute_kind(training.compute_kind()?)?
        .with_activation_checkpointing(training.activation_checkpointing))]
    model: Llama,
    // Read, shuffled, tokenized and packed on a background thread, a few batches ahead.
    #[build(dataset.train_loader(&dims, &corpus.train, &tokenizer, training.batching())?)]
    train_data: TokenLoader<Documents, BpeTokenizer, HfConvention>,
    #[build(dataset.val_loader(&dims, &corpus.val, &tokenizer, training.batching())?)]
    val_data: TokenLoader<Documents, BpeTokenizer, HfConvention>,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), adamw)?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, schedule)?)]
    lr_scheduler: Warmup<AdamW>,
}

titan::main!(TinyLlama);
