//! A dataloader written in the experiment file (an in-memory counting sequence) feeds the
//! model through the builder, replacing the experiment's own dataloader; a metrics sink written
//! there (where a W&B or MLflow one would go) receives every record.

use titan::cli::TrainArgs;
use titan::data::{HfBatch, HfLabels, TokenIds};
use titan::metrics::Record;
use titan::prelude::*;
use titan::tch::{Device, Kind, Tensor};

/// Rows of `0, 1, 2, …` modulo the vocabulary, each row starting one further.
pub struct Counting {
    next: i64,
    vocab: i64,
}

impl Dataloader for Counting {
    type Batch = HfBatch;
    type State = i64;
    fn next_batch(&mut self) -> titan::Result<HfBatch> {
        let ids =
            Tensor::f_arange_start(self.next, self.next + 2 * 16, (Kind::Int64, Device::Cpu))?
                .f_remainder(self.vocab)?
                .f_view([2, 16])?;
        self.next += 1;
        Ok(HfBatch {
            input_ids: TokenIds(ids.shallow_clone()),
            labels: HfLabels(ids),
        })
    }
    fn state(&self) -> i64 {
        self.next
    }
    fn load_state(&mut self, state: i64) -> titan::Result<()> {
        self.next = state;
        Ok(())
    }
    fn epoch(&self) -> u64 {
        0
    }
}

/// Keeps the records it receives where the test reads them.
#[derive(Clone, Default)]
pub struct Collect(pub std::sync::Arc<std::sync::Mutex<Vec<Record>>>);

impl MetricsSink for Collect {
    fn record(&mut self, record: &Record) -> titan::Result<()> {
        match self.0.lock() {
            Ok(mut records) => records.push(record.clone()),
            Err(_) => return Err(titan::Error::Data("a poisoned lock".into())),
        }
        Ok(())
    }
}

/// A tiny Llama on counting sequences, validated on the same kind of data.
#[experiment]
pub struct Counter {
    #[config(TrainingConfig { steps: 4, log_every: 2, samples: 0, device: "cpu".into(), ..TrainingConfig::default() })]
    training: TrainingConfig,
    #[build(Llama::new(LlamaConfig {
        vocab_size: 32, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
        num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 32,
        ..LlamaConfig::tiny()
    }, Device::Cpu)?)]
    model: Llama,
    #[build(Counting { next: 0, vocab: 32 })]
    train_data: Counting,
    #[build(Counting { next: 1000, vocab: 32 })]
    val_data: Counting,
    #[build(CausalLmLoss)]
    loss: CausalLmLoss,
    #[build(AdamW::new(model.parameters(), AdamWConfig { lr: 1e-2, ..AdamWConfig::default() })?)]
    optimizer: AdamW,
    #[build(Warmup::new(&optimizer, WarmupConfig { warmup_steps: 1, total_steps: 4, ..WarmupConfig::default() })?)]
    lr_scheduler: Warmup<AdamW>,
    // `Option`: a sink built only where it is wanted (on rank 0, with an API key).
    #[build(titan::dist::writes_outputs()?.then(Collect::default))]
    metrics: Option<Collect>,
}

pub fn main() {
    let dir = std::env::temp_dir().join(format!("titan-ui-counter-{}", std::process::id()));
    let mut training = TrainingConfig {
        steps: 4,
        log_every: 2,
        samples: 0,
        device: "cpu".into(),
        ..TrainingConfig::default()
    };
    training.output_dir = Some(dir.clone());
    // The builder takes a replacement for any field and still checks the wiring.
    let sink = Collect::default();
    let mut experiment = Counter::builder()
        .training(training)
        .train_data(Counting { next: 7, vocab: 32 })
        .metrics(Some(sink.clone()))
        .build()
        .expect("builds");
    let mut trainer =
        titan::experiment::trainer_for(experiment.training(), "counter").expect("trainer");
    let summary = experiment.train(&mut trainer).expect("trains");
    assert_eq!(summary.steps, 4);
    assert!(summary.val_loss.is_some());
    // Steps 2 and 4 (`log_every: 2`), then the evaluation at the end: as metrics.jsonl has them.
    let records = sink.0.lock().expect("records").clone();
    let steps: Vec<u64> = records
        .iter()
        .map(|r| match r {
            Record::Step(m) => m.step,
            Record::Eval(m) => m.step,
        })
        .collect();
    assert_eq!(steps, [2, 4, 4], "{records:?}");
    assert!(matches!(records[2], Record::Eval(_)), "{records:?}");
    let jsonl = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    assert_eq!(jsonl.lines().count(), records.len(), "{jsonl}");
    let _ = TrainArgs::default();
    let _ = std::fs::remove_dir_all(&dir);
}
