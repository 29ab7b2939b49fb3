//! The roles a field can play, and which of them an experiment must have.

use std::fmt;

/// A component's role in the training loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Training,
    Dist,
    Tokenizer,
    TrainData,
    ValData,
    Model,
    Loss,
    Optimizer,
    LrScheduler,
    Metrics,
}

pub const ALL: [Role; 10] = [
    Role::Training,
    Role::Dist,
    Role::Tokenizer,
    Role::TrainData,
    Role::ValData,
    Role::Model,
    Role::Loss,
    Role::Optimizer,
    Role::LrScheduler,
    Role::Metrics,
];

/// Roles without which there is nothing to train, with what to write for each.
pub const REQUIRED: [(Role, &str); 5] = [
    (Role::Model, "`#[build(Llama::new(...)?)] model: Llama`"),
    (
        Role::TrainData,
        "`#[build(PackedLoader::new(...)?)] train_data: PackedLoader`",
    ),
    (Role::Loss, "`#[build(CausalLmLoss)] loss: CausalLmLoss`"),
    (
        Role::Optimizer,
        "`#[build(AdamW::new(model.parameters(), AdamWConfig::default())?)] optimizer: AdamW`",
    ),
    (
        Role::LrScheduler,
        "`#[build(Warmup::new(&optimizer, WarmupConfig::default())?)] lr_scheduler: Warmup<AdamW>`",
    ),
];

impl Role {
    /// The field name (and `#[role(...)]` name) of the role.
    pub fn name(self) -> &'static str {
        match self {
            Role::Training => "training",
            Role::Dist => "dist",
            Role::Tokenizer => "tokenizer",
            Role::TrainData => "train_data",
            Role::ValData => "val_data",
            Role::Model => "model",
            Role::Loss => "loss",
            Role::Optimizer => "optimizer",
            Role::LrScheduler => "lr_scheduler",
            Role::Metrics => "metrics",
        }
    }

    /// What the role is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Training => "training settings section",
            Role::Dist => "distributed environment",
            Role::Tokenizer => "tokenizer",
            Role::TrainData => "training dataloader",
            Role::ValData => "validation dataloader",
            Role::Model => "model",
            Role::Loss => "loss",
            Role::Optimizer => "optimizer",
            Role::LrScheduler => "LR scheduler",
            Role::Metrics => "metrics sink",
        }
    }

    /// The role a name stands for, if any.
    pub fn from_name(name: &str) -> Option<Role> {
        ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}
