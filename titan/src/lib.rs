//! titan: LLM pretraining on libtorch, where an experiment is one Rust file and every component
//! (model, data, optimizer, scheduler, loss, metrics) is injected, never built from a string.

pub mod batch;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod diff;
pub mod dist;
mod error;
pub mod experiment;
pub mod loss;
pub mod lr;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod parallel_dims;
pub mod shim;
pub mod tokenizer;
pub mod trainer;

pub use batch::{Batch, HfBatch, HfLabels, IGNORE_INDEX, ShiftedLabels, TitanBatch, TokenIds};
pub use checkpoint::{StateDict, Stateful, Stateless};
pub use data::{Dataloader, Dataset};
pub use dist::{C10dEnv, DistributedEnvironment, LocalEnv, ProcessGroup};
pub use error::{Error, Result};
pub use experiment::Experiment;
pub use experiment::cli;
pub use loss::{CausalLmLoss, LogitRows, Loss, ShiftedLoss};
pub use lr::{LrScheduler, Warmup, WarmupConfig};
pub use model::{Llama, LlamaConfig, Model, ParamGroup, Parameter, Parameters, ScoreLogits};
pub use optim::{Adafactor, AdafactorConfig, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};
pub use parallel_dims::{DataParallel, ParallelConfig, ParallelDims};
pub use titan_macros::experiment;
pub use tokenizer::{BpeConfig, BpeTokenizer, Tokenizer, TrainingText};
pub use trainer::{Precision, Trainer, TrainingConfig};

/// What an experiment file needs in scope: the role traits (so `model.parameters()` works), the
/// checkpoint-state traits, the common components and the `#[experiment]` attribute.
pub mod prelude {
    pub use crate::batch::{Batch, HfBatch, HfLabels, ShiftedLabels, TitanBatch, TokenIds};
    pub use crate::checkpoint::{StateDict, Stateful, Stateless};
    pub use crate::data::{
        Batching, Corpus, DataSource, Dataloader, Dataset, DatasetConfig, Documents, HfConvention,
        Layout, PackedLoader, Split, StoryConfig, TitanConvention, TokenLoader, pack_documents,
    };
    pub use crate::dist::{C10dEnv, DistributedEnvironment, LocalEnv};
    pub use crate::experiment::Experiment;
    pub use crate::loss::{CausalLmLoss, Loss, ShiftedLoss};
    pub use crate::lr::{Decay, LrScheduler, Warmup, WarmupConfig};
    pub use crate::metrics::MetricsSink;
    pub use crate::model::{
        AttnMaskType, Llama, LlamaConfig, Model, ParamGroup, Parameter, Parameters, check_fits,
    };
    pub use crate::optim::{
        Adafactor, AdafactorConfig, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig,
    };
    pub use crate::parallel_dims::{DataParallel, ParallelConfig, ParallelDims};
    pub use crate::tokenizer::{BpeConfig, BpeTokenizer, Tokenizer, TrainingText};
    pub use crate::trainer::{Precision, TrainingConfig};
    pub use titan_macros::experiment;
}

/// Re-exported so experiments and tests use the same libtorch bindings as titan.
pub use tch;
