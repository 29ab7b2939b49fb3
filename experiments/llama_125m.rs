//! llama_125m: a ~125M-parameter Llama 3 (12 layers, 768 wide, sequences of 2048, 32K BPE)
//! meant for a GPU and `--data`: the same components as tiny_llama, a larger recipe. It runs on
//! the built-in stories too, which are too small a corpus for a model this size.

use titan::prelude::*;

/// The 125M experiment; `--print-config` shows its settings and construction order.
#[experiment]
pub struct Llama125m {
    // 16 × 2048 tokens a step, 20,000 steps: about 650M tokens (5 per parameter), with a
    // checkpoint (weights and AdamW's moments, about 1.5 GB) every 1000 steps to resume from.
    #[config(TrainingConfig {
        steps: 20_000,
        batch_size: 16,
        seq_len: 2048,
        log_every: 50,
        eval_every: 1000,
        checkpoint_every: 1000,
        ..TrainingConfig::default()
    })]
    training: TrainingConfig,
    #[config(LlamaConfig::llama3_125m())]
    llama: LlamaConfig,
    #[config(BpeConfig { vocab_size: 32_768, max_len: 2048, ..BpeConfig::default() })]
    bpe: BpeConfig,
    #[config(AdamWConfig { lr: 6e-4, ..AdamWConfig::default() })]
    adamw: AdamWConfig,
    #[config(WarmupConfig {
        warmup_steps: (training.steps / 10).clamp(1, 2000),
        total_steps: training.steps,
        decay: Decay::Cosine,
        min_lr_ratio: 0.1,
        decay_ratio: None,
    })]
    schedule: WarmupConfig,
    #[config(DatasetConfig { tokenizer_sample: 100_000, ..DatasetConfig::default() })]
    dataset: DatasetConfig,
    // torchtitan's `[parallelism]` axes; data parallel over every process by default.
    #[config(ParallelConfig::default())]
    parallelism: ParallelConfig,

    // torchrun's ranks (or `--nproc-per-node N`) in torch's process group; one process
    // without them.
    #[build(C10dEnv::from_env(training.device()?, &parallelism)?)]
    dist: C10dEnv,
    #[build(ParallelDims::with_config(&dist, &parallelism, training.device()?)?)]
    dims: ParallelDims,
    #[build(Corpus::new(
        training.data.as_deref(),
        training.val_data.as_deref(),
        &dataset,
        StoryConfig::for_tokens(training.seed, training.tokens()),
    )?)]
    corpus: Corpus,
    #[build(BpeTokenizer::train_or_load(
        &bpe.in_dir(&training.output_dir()),
        corpus.train.sample_of(dataset.tokenizer_sample),
    )?)]
    tokenizer: BpeTokenizer,
    #[build(Llama::new(llama.with_tokenizer(&tokenizer), dims.device())?
        .with_compute_kind(training.compute_kind()?)?
        .with_activation_checkpointing(training.activation_checkpointing))]
    model: Llama,
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

titan::main!(Llama125m);
