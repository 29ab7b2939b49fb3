//! The training loop and nothing else: it receives built components and runs
//! `dataloader → forward → loss → backward → clip → optimizer → scheduler → metrics → eval`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::{Batch, Dataloader};
use crate::loss::Loss;
use crate::lr::LrScheduler;
use crate::metrics::{EvalMetrics, MetricsSink, Record, StepMetrics, console_line};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::{Error, Result, device};

/// How long and how the loop runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// Optimizer steps to take.
    pub steps: u64,
    /// Log (and check for non-finite values) every this many steps.
    pub log_every: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Validation batches per evaluation.
    pub eval_batches: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            log_every: 10,
            eval_every: 0,
            eval_batches: 8,
            max_grad_norm: 1.0,
        }
    }
}

/// Evaluates a model on a fixed, deterministic set of validation batches.
#[derive(Debug)]
pub struct Validator<D: Dataloader> {
    loader: D,
    start: serde_json::Value,
    num_batches: usize,
}

impl<D: Dataloader> Validator<D> {
    /// Evaluates on the first `num_batches` batches `loader` yields, every time.
    pub fn new(loader: D, num_batches: usize) -> Result<Self> {
        let start = serde_json::to_value(loader.state())?;
        Ok(Self {
            loader,
            start,
            num_batches: num_batches.max(1),
        })
    }

    /// Mean loss per counted token over the validation batches, and the token count.
    pub fn evaluate<M, L>(&mut self, model: &M, loss: &L) -> Result<(f64, f64)>
    where
        M: Model,
        D::Batch: Batch<Input = M::Input>,
        L: Loss<<D::Batch as Batch>::Labels>,
    {
        let _guard = tch::no_grad_guard();
        self.loader
            .load_state(serde_json::from_value(self.start.clone())?)?;
        let mut sum = Tensor::f_zeros([], (Kind::Float, model.device()))?;
        let mut count = Tensor::f_zeros([], (Kind::Float, model.device()))?;
        for _ in 0..self.num_batches {
            let batch = self.loader.next_batch()?.to_device(model.device())?;
            let (input, labels) = batch.into_parts();
            let logits = model.forward(&input)?;
            let (s, c) = loss.loss_sum(&logits, &labels)?;
            sum = sum.f_add(&s)?;
            count = count.f_add(&c)?;
        }
        let count = count.f_double_value(&[])?;
        Ok((sum.f_double_value(&[])? / count.max(1.0), count))
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Training loss at the last logged step.
    pub last_loss: f64,
    /// Final validation loss, if a validator was given.
    pub val_loss: Option<f64>,
    /// Steps taken.
    pub steps: u64,
    /// Wall-clock time of the loop.
    pub elapsed: Duration,
}

/// Runs the loop over injected components; owns only its settings and sinks.
pub struct Trainer {
    config: TrainerConfig,
    sinks: Vec<Box<dyn MetricsSink>>,
    progress: bool,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Trainer {
    /// A trainer with no sinks; the progress bar shows when stderr is a terminal.
    pub fn new(config: TrainerConfig) -> Self {
        Self {
            config,
            sinks: Vec::new(),
            progress: true,
        }
    }

    /// Adds a metrics sink.
    pub fn with_sink(mut self, sink: impl MetricsSink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Turns the console progress bar and lines off (tests).
    pub fn quiet(mut self) -> Self {
        self.progress = false;
        self
    }

    /// The settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Trains `model` for `config.steps` steps and evaluates at the end (and every
    /// `eval_every` steps) when a validator is given.
    pub fn fit<M, D, V, L, O, S>(
        &mut self,
        model: &M,
        train: &mut D,
        mut validator: Option<&mut Validator<V>>,
        loss: &L,
        optimizer: &mut O,
        scheduler: &mut S,
    ) -> Result<Summary>
    where
        M: Model,
        D: Dataloader,
        D::Batch: Batch<Input = M::Input>,
        V: Dataloader,
        V::Batch: Batch<Input = M::Input, Labels = <D::Batch as Batch>::Labels>,
        L: Loss<<D::Batch as Batch>::Labels>,
        O: Optimizer,
        S: LrScheduler<Optimizer = O>,
    {
        let cfg = self.config.clone();
        let device = model.device();
        let params = model.parameters().named();
        let bar = self.progress_bar(cfg.steps);
        let started = Instant::now();
        let mut window = Window::new();
        let mut last_loss = f64::NAN;
        let mut val_loss = None;
        for step in 1..=cfg.steps {
            let wait = Instant::now();
            let batch = train.next_batch()?.to_device(device)?;
            window.data_wait += wait.elapsed();
            window.tokens += batch.num_tokens();

            let (input, labels) = batch.into_parts();
            let lr = scheduler.step(optimizer);
            optimizer.zero_grad()?;
            let logits = model.forward(&input)?;
            let step_loss = loss.loss(&logits, &labels)?;
            step_loss.f_backward()?;
            let grad_norm = clip_grad_norm(&params, cfg.max_grad_norm)?;
            optimizer.step()?;
            window.steps += 1;
            bar.inc(1);

            if step % cfg.log_every.max(1) == 0 || step == cfg.steps {
                // The only host syncs of the loop: values are read at log points alone.
                device::synchronize(device);
                let loss_value = step_loss.f_double_value(&[])?;
                let norm_value = grad_norm.f_double_value(&[])?;
                if !loss_value.is_finite() || !norm_value.is_finite() {
                    return Err(Error::Training(format!(
                        "non-finite value at step {step} (epoch {}): loss {loss_value}, grad_norm {norm_value}; stopping",
                        train.epoch()
                    )));
                }
                last_loss = loss_value;
                let record =
                    Record::Step(window.finish(step, loss_value, lr, norm_value, train.epoch()));
                self.emit(&bar, &record)?;
                bar.set_message(format!("loss {loss_value:.3}"));
            }
            let eval_now = cfg.eval_every > 0 && step % cfg.eval_every == 0;
            if let Some(v) = validator
                .as_deref_mut()
                .filter(|_| eval_now || step == cfg.steps)
            {
                let (value, tokens) = v.evaluate(model, loss)?;
                val_loss = Some(value);
                self.emit(
                    &bar,
                    &Record::Eval(EvalMetrics {
                        step,
                        val_loss: value,
                        val_perplexity: value.exp(),
                        val_tokens: tokens,
                    }),
                )?;
                window.restart();
            }
        }
        bar.finish_and_clear();
        Ok(Summary {
            last_loss,
            val_loss,
            steps: cfg.steps,
            elapsed: started.elapsed(),
        })
    }

    fn progress_bar(&self, steps: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(steps);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps  ETA {eta_precise}  {msg}",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar
    }

    fn emit(&mut self, bar: &ProgressBar, record: &Record) -> Result<()> {
        for sink in &mut self.sinks {
            sink.record(record)?;
        }
        if self.progress {
            bar.suspend(|| eprintln!("{}", console_line(record)));
        }
        Ok(())
    }
}

/// Counters between two log points.
struct Window {
    since: Instant,
    steps: u64,
    tokens: i64,
    data_wait: Duration,
}

impl Window {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            steps: 0,
            tokens: 0,
            data_wait: Duration::ZERO,
        }
    }

    fn restart(&mut self) {
        *self = Self::new();
    }

    fn finish(&mut self, step: u64, loss: f64, lr: f64, grad_norm: f64, epoch: u64) -> StepMetrics {
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let steps = self.steps.max(1) as f64;
        let m = StepMetrics {
            step,
            loss,
            lr,
            grad_norm,
            tps: self.tokens as f64 / secs,
            step_time_s: secs / steps,
            data_wait_s: self.data_wait.as_secs_f64() / steps,
            epoch,
        };
        self.restart();
        m
    }
}

/// Scales gradients so their global L2 norm is at most `max_norm` (0: no clipping) and returns
/// the norm before clipping, as a tensor (reading it would sync the device).
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.grad())
        .filter(Tensor::defined)
        .collect();
    let norms = grads
        .iter()
        .map(|g| g.f_norm())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if norms.is_empty() {
        return Ok(Tensor::f_zeros([], (Kind::Float, tch::Device::Cpu))?);
    }
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    if max_norm > 0.0 {
        let coef = total
            .f_add_scalar(1e-6)?
            .f_reciprocal()?
            .f_mul_scalar(max_norm)?
            .f_clamp_max(1.0)?;
        for mut g in grads {
            let _ = g.f_mul_(&coef)?;
        }
    }
    Ok(total)
}
