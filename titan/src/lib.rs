//! titan: LLM pretraining on libtorch, where an experiment is one Rust file and every component
//! (model, data, optimizer, scheduler, loss, metrics) is injected, never built from a string.

pub mod cli;
pub mod data;
pub mod device;
pub mod dist;
mod error;
pub mod loss;
pub mod lr;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod tokenizer;
pub mod trainer;

pub use data::{Batch, Dataloader};
pub use dist::{DistributedEnvironment, LocalEnv};
pub use error::{Error, Result};
pub use loss::{CausalLmLoss, Loss};
pub use lr::{LrScheduler, Warmup, WarmupConfig};
pub use model::{Llama, LlamaConfig, Model, Parameters};
pub use optim::{AdamW, AdamWConfig, Optimizer};
pub use tokenizer::{BpeConfig, BpeTokenizer, Tokenizer};
pub use trainer::{Trainer, TrainerConfig, Validator};

/// Re-exported so experiments and tests use the same libtorch bindings as titan.
pub use tch;
