//! The training loop and nothing else: it receives built components and runs
//! `dataloader → forward → loss → backward → clip → optimizer → scheduler → metrics → eval`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::{Batch, Dataloader};
use crate::experiment::{FitsModelInput, Parts, SameLabels, SameOptimizer, wire};
use crate::loss::Loss;
use crate::lr::LrScheduler;
use crate::metrics::{EvalMetrics, MetricsSink, Record, StepMetrics, console_line};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::shim::{self, CudaGraph, DeviceMemory};
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
    /// Micro-batches per optimizer step; their gradients add up to one large batch's.
    pub grad_accum_steps: usize,
    /// Peak FLOP/s of one device for MFU; unset: the GPU's entry in torchtitan's table (none
    /// on CPU, where MFU is then not reported).
    pub peak_flops: Option<f64>,
    /// On CUDA, record the whole step (zero_grad, forward, backward, clipping, optimizer) once
    /// as a CUDA graph after a few eager warm-up steps and replay it, with each batch copied
    /// into fixed buffers: one launch instead of hundreds. Needs a capturable optimizer
    /// ([`Optimizer::capturable`]) and batches of one shape; otherwise the run stays eager.
    pub cuda_graph: bool,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            log_every: 10,
            eval_every: 0,
            eval_batches: 8,
            max_grad_norm: 1.0,
            grad_accum_steps: 1,
            peak_flops: None,
            cuda_graph: true,
        }
    }
}

/// Mean loss per counted token of `model` over the next `batches` batches of `data` (no
/// gradients), and the number of tokens counted.
pub fn evaluate<M, V, L>(model: &M, data: &mut V, loss: &L, batches: usize) -> Result<(f64, f64)>
where
    M: Model,
    V: Dataloader,
    <V::Batch as Batch>::Input: FitsModelInput<M::Input>,
    L: Loss<<V::Batch as Batch>::Labels>,
{
    crate::experiment::evaluate_with(
        data,
        batches,
        model.device(),
        &|input| model.forward(input),
        &|logits, labels| loss.loss_sum(logits, labels),
    )
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
    staged: bool,
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
            staged: false,
        }
    }

    /// Runs every step from fixed batch buffers, as CUDA graph replay does, even where no graph
    /// is captured (CPU): the data path of graph replay, testable without a GPU.
    pub fn with_staged_batches(mut self) -> Self {
        self.staged = true;
        self
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
    /// `eval_every` steps) on the first `eval_batches` batches of `val`, when given.
    pub fn fit<M, D, V, L, O, S>(
        &mut self,
        model: &M,
        train: &mut D,
        val: Option<&mut V>,
        loss: &L,
        optimizer: &mut O,
        scheduler: &mut S,
    ) -> Result<Summary>
    where
        M: Model,
        D: Dataloader,
        <D::Batch as Batch>::Input: FitsModelInput<M::Input>,
        V: Dataloader,
        <V::Batch as Batch>::Input: FitsModelInput<M::Input>,
        <V::Batch as Batch>::Labels: SameLabels<<D::Batch as Batch>::Labels>,
        L: Loss<<D::Batch as Batch>::Labels>,
        O: Optimizer,
        S: LrScheduler,
        S::Optimizer: SameOptimizer<O>,
    {
        let mut wired = wire(model).train_data(train).loss(loss);
        if let Some(val) = val {
            wired = wired.val_data(val, self.config.eval_batches)?;
        }
        wired.optimizer(optimizer).lr_scheduler(scheduler).fit(self)
    }

    /// Runs the loop over wired, type-erased components (what `#[experiment]` calls).
    pub fn run<Lab>(&mut self, mut parts: Parts<'_, Lab>) -> Result<Summary> {
        let cfg = self.config.clone();
        if self.progress {
            let count: i64 = parts.params.iter().map(|(_, p)| p.numel() as i64).sum();
            let on = match parts.device {
                Device::Cpu => format!(
                    "Cpu ({} threads; MKL {})",
                    tch::get_num_threads(),
                    if crate::shim::mkl_vendor_check_off() {
                        "kernels by instruction set"
                    } else {
                        "vendor check on"
                    }
                ),
                device => format!("{device:?}"),
            };
            eprintln!(
                "training {:.2}M parameters on {on} for {} steps",
                count as f64 / 1e6,
                cfg.steps
            );
        }
        let peak = crate::metrics::peak_flops(parts.device, cfg.peak_flops);
        // The first step whose loss or gradient norm was not finite, tracked on the device so
        // steps never sync; read wherever the loop syncs anyway (logs, evaluations).
        let mut first_bad = Tensor::f_full([], NO_STEP, (Kind::Int64, parts.device))?;
        let accum = cfg.grad_accum_steps.max(1) as u64;
        let bar = self.progress_bar(cfg.steps);
        let started = Instant::now();
        let mut window = Window::new();
        let mut last_loss = f64::NAN;
        let mut val_loss = None;
        let mut exec = self.execution(&parts, &cfg)?;
        let mut info = StepInfo::default();
        for step in 1..=cfg.steps {
            let lr = parts.update.schedule();
            let mut fall_back = false;
            let (step_loss, grad_norm) = match &mut exec {
                Execution::Eager => device_step(&mut parts, &cfg, false, &mut window, &mut info)?,
                Execution::Staged => {
                    stage(&mut parts, &cfg, &mut window, &mut info)?;
                    device_step(&mut parts, &cfg, true, &mut window, &mut info)?
                }
                Execution::Graph { graph, .. } if step <= GRAPH_WARMUP_STEPS => graph
                    .on_side_stream(|| {
                        device_step(&mut parts, &cfg, false, &mut window, &mut info)
                    })?,
                Execution::Graph { graph, outputs } => {
                    if !stage(&mut parts, &cfg, &mut window, &mut info)? {
                        self.notice(&format!(
                            "step {step}: a batch no longer fits the captured step's buffers \
                             (its shapes changed, or its type lists no tensors through \
                             `Batch::tensors`): eager steps from here"
                        ));
                        fall_back = true;
                        device_step(&mut parts, &cfg, true, &mut window, &mut info)?
                    } else {
                        if outputs.is_none() {
                            // The warm-up's blocks, cached on its side stream, are free now:
                            // give them back rather than hold them beside the graph's pool.
                            shim::empty_cache(parts.device)?;
                            let captured = graph.capture(|| {
                                device_step(&mut parts, &cfg, true, &mut window, &mut info)
                            });
                            match captured {
                                Ok(captured) => *outputs = Some(captured),
                                Err(e) => {
                                    // Nothing captured ran: run this step's batches eagerly.
                                    self.notice(&format!(
                                        "step {step}: capturing the step as a CUDA graph failed \
                                         ({e}): eager steps from here (`training.cuda_graph = \
                                         false` skips the attempt)"
                                    ));
                                    fall_back = true;
                                }
                            }
                        }
                        match outputs {
                            Some((l, n)) if !fall_back => {
                                graph.replay()?;
                                (l.shallow_clone(), n.shallow_clone())
                            }
                            _ => device_step(&mut parts, &cfg, true, &mut window, &mut info)?,
                        }
                    }
                }
            };
            if fall_back {
                exec = Execution::Staged;
            }
            let (epoch, seq_len) = (info.epoch, info.seq_len);
            let finite = step_loss
                .f_isfinite()?
                .f_logical_and(&grad_norm.f_to_device(parts.device)?.f_isfinite()?)?;
            let here = Tensor::f_where_scalar(&finite, NO_STEP, step as i64)?;
            first_bad = first_bad.f_minimum(&here)?;
            window.steps += 1;
            bar.inc(1);

            if step % cfg.log_every.max(1) == 0 || step == cfg.steps {
                // The only host syncs of the loop: values are read at log points alone.
                device::synchronize(parts.device);
                check_finite(&first_bad, accum, epoch)?;
                let loss_value = step_loss.f_double_value(&[])?;
                let norm_value = grad_norm.f_double_value(&[])?;
                last_loss = loss_value;
                let flops = Flops {
                    per_token: (parts.flops_per_token)(seq_len),
                    peak,
                };
                // Peaks since the previous log line, as torchtitan reports them.
                let memory = shim::device_memory(parts.device)?;
                shim::reset_peak_memory(parts.device)?;
                let reading = Reading {
                    step,
                    loss: loss_value,
                    lr,
                    grad_norm: norm_value,
                };
                let metrics = window.finish(reading, epoch, flops, memory);
                self.emit(&bar, &Record::Step(metrics))?;
                bar.set_message(format!("loss {loss_value:.3}"));
            }
            let eval_now = cfg.eval_every > 0 && step % cfg.eval_every == 0;
            if let Some(validate) = parts
                .validate
                .as_mut()
                .filter(|_| eval_now || step == cfg.steps)
            {
                check_finite(&first_bad, accum, epoch)?;
                let (value, tokens) = validate()?;
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

    /// How this run's steps execute: a CUDA graph where it can be, eager otherwise.
    fn execution<Lab>(&self, parts: &Parts<'_, Lab>, cfg: &TrainerConfig) -> Result<Execution> {
        let eager = if self.staged {
            Execution::Staged
        } else {
            Execution::Eager
        };
        if !(cfg.cuda_graph && parts.device.is_cuda()) || cfg.steps <= GRAPH_WARMUP_STEPS {
            return Ok(eager);
        }
        if !shim::has_cuda_graphs() {
            self.notice("this titan was built without CUDA's headers: no CUDA graph, eager steps");
            return Ok(eager);
        }
        if !parts.update.capturable() {
            self.notice(
                "the optimizer is not capturable (`Optimizer::capturable`): no CUDA graph, \
                 eager steps",
            );
            return Ok(eager);
        }
        Ok(Execution::Graph {
            graph: CudaGraph::new(parts.device)?,
            outputs: None,
        })
    }

    fn notice(&self, message: &str) {
        if self.progress {
            eprintln!("note: {message}");
        }
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

/// "No step" for the first-non-finite-step tracker.
const NO_STEP: i64 = i64::MAX;

/// Stops the run, naming the step and its batches, when `first_bad` holds a step whose loss or
/// gradient norm was NaN or infinite. Called before anything about that step is written.
fn check_finite(first_bad: &Tensor, accum: u64, epoch: u64) -> Result<()> {
    let step = first_bad.f_int64_value(&[])?;
    if step == NO_STEP {
        return Ok(());
    }
    let step = step as u64;
    let (first, last) = ((step - 1) * accum + 1, step * accum);
    let batches = if first == last {
        format!("training batch {first}")
    } else {
        format!("training batches {first}..={last}")
    };
    Err(Error::Training(format!(
        "the loss or gradient norm became NaN or infinite at step {step} ({batches} of this run, \
         dataloader epoch {epoch}); stopping before logging or evaluating it"
    )))
}

/// The model's FLOPs per token and the device's peak FLOP/s.
#[derive(Debug, Clone, Copy)]
struct Flops {
    per_token: f64,
    peak: Option<f64>,
}

/// Eager steps before a CUDA graph is captured: lazy initialisation (cuBLAS handles,
/// allocator pools, the optimizer's state) happens outside the graph.
const GRAPH_WARMUP_STEPS: u64 = 3;

/// How steps execute.
enum Execution {
    /// Fetch, forward, backward and update, launched op by op.
    Eager,
    /// As eager, but each batch is first copied into fixed buffers (the graph's data path).
    Staged,
    /// Warm-up steps eagerly on a side stream, then one captured step replayed.
    Graph {
        graph: CudaGraph,
        /// The captured step's loss and gradient norm, rewritten by every replay.
        outputs: Option<(Tensor, Tensor)>,
    },
}

/// Host-side facts about the latest step's batches.
#[derive(Default)]
struct StepInfo {
    epoch: u64,
    seq_len: i64,
}

/// Fetches the step's micro-batches into their slots; false when a batch cannot be staged.
fn stage<Lab>(
    parts: &mut Parts<'_, Lab>,
    cfg: &TrainerConfig,
    window: &mut Window,
    info: &mut StepInfo,
) -> Result<bool> {
    let mut reusable = true;
    for slot in 0..cfg.grad_accum_steps.max(1) {
        let staged = parts.data.stage(slot)?;
        window.data_wait += staged.wait;
        window.tokens += staged.tokens;
        info.epoch = staged.epoch;
        reusable &= staged.reusable;
    }
    Ok(reusable)
}

/// One step's device work: zero the gradients, run the micro-batches (fetched now, or
/// the `staged` ones), clip, update. Returns the step's mean loss and gradient norm (tensors).
fn device_step<Lab>(
    parts: &mut Parts<'_, Lab>,
    cfg: &TrainerConfig,
    staged: bool,
    window: &mut Window,
    info: &mut StepInfo,
) -> Result<(Tensor, Tensor)> {
    parts.update.zero_grad()?;
    let loss = parts.loss.clone();
    let data = &mut parts.data;
    let (step_loss, _) = accumulate_gradients(&parts.params, cfg.grad_accum_steps, |slot| {
        let mut score = |logits: &Tensor, labels: &Lab| loss(logits, labels);
        if staged {
            let (sum, count, seq_len) = data.run_staged(slot, &mut score)?;
            info.seq_len = seq_len;
            return Ok((sum, count));
        }
        let fetched = data.next(&mut score)?;
        window.data_wait += fetched.wait;
        window.tokens += fetched.tokens;
        info.epoch = fetched.epoch;
        info.seq_len = fetched.seq_len;
        Ok((fetched.sum, fetched.count))
    })?;
    let grad_norm = clip_grad_norm(&parts.params, cfg.max_grad_norm)?;
    parts.update.step()?;
    Ok((step_loss, grad_norm))
}

fn gib(bytes: i64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The values read back at a log point.
struct Reading {
    step: u64,
    loss: f64,
    lr: f64,
    grad_norm: f64,
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

    fn finish(
        &mut self,
        reading: Reading,
        epoch: u64,
        flops: Flops,
        memory: Option<DeviceMemory>,
    ) -> StepMetrics {
        let Reading {
            step,
            loss,
            lr,
            grad_norm,
        } = reading;
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let steps = self.steps.max(1) as f64;
        let tps = self.tokens as f64 / secs;
        let tflops = tps * flops.per_token / 1e12;
        let m = StepMetrics {
            step,
            loss,
            lr,
            grad_norm,
            tps,
            tflops,
            mfu: flops.peak.map(|peak| 100.0 * tflops * 1e12 / peak),
            max_rss_gib: crate::metrics::max_rss_gib(),
            max_reserved_gib: memory.map(|m| gib(m.max_reserved)),
            max_allocated_gib: memory.map(|m| gib(m.max_allocated)),
            step_time_s: secs / steps,
            data_wait_s: self.data_wait.as_secs_f64() / steps,
            epoch,
        };
        self.restart();
        m
    }
}

/// Runs `micro_batches` micro-batches (`micro(i)` runs one's forward and backward passes of its
/// loss *sum*, e.g. with [`Model::forward_backward`], and returns that sum and its count of
/// tokens) and divides the accumulated gradients by the total count: the gradient of the mean loss over every counted token of the step, what one large
/// batch gives however padding falls (torchtitan's global valid tokens). Returns the step's
/// mean loss (detached) and the total count, as tensors (reading them would sync the device).
pub fn accumulate_gradients<F>(
    params: &[(String, Tensor)],
    micro_batches: usize,
    mut micro: F,
) -> Result<(Tensor, Tensor)>
where
    F: FnMut(usize) -> Result<(Tensor, Tensor)>,
{
    let mut total: Option<(Tensor, Tensor)> = None;
    for i in 0..micro_batches.max(1) {
        let (sum, count) = micro(i)?;
        let (sum, count) = (sum.f_detach()?, count.f_to_kind(Kind::Float)?);
        total = Some(match total {
            None => (sum, count),
            Some((s, c)) => (s.f_add(&sum)?, c.f_add(&count)?),
        });
    }
    let Some((sum, count)) = total else {
        return Err(Error::Training("no micro-batch ran".into()));
    };
    let count = count.f_clamp_min(1)?;
    let _guard = tch::no_grad_guard();
    let scale = count.f_reciprocal()?;
    for (_, p) in params {
        let mut grad = p.grad();
        if grad.defined() {
            let _ = grad.f_mul_(&scale)?;
        }
    }
    Ok((sum.f_div(&count)?, count))
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
