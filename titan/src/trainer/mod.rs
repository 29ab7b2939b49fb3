//! The training loop and everything it runs: it receives built components (as [`Parts`], from
//! the wiring chain) and runs `dataloader → forward → loss → backward → clip → optimizer →
//! scheduler → metrics → eval`. It constructs no component and knows nothing of experiments.

mod checkpointing;
mod contracts;
mod coverage;
mod eval;
mod grads;
mod nonfinite;
mod pace;
pub(crate) mod parts;
mod profiling;
mod settings;
mod step;
mod stop;
pub(crate) mod update;
mod window;

pub use checkpointing::{Checkpointing, ResumeChanges};
pub(crate) use checkpointing::{check_tokenizer, ended_finite, tokenizer_of};
pub use contracts::{FitsModelInput, SameLabels, SameOptimizer};
pub use eval::evaluate;
pub(crate) use eval::evaluate_with;
pub use grads::{accumulate_gradients, clip_grad_norm};
pub use parts::{Fetched, LabelsLoss, LogitsLoss, Parts, ScoreLabels, Staged};
pub use settings::{Precision, SHORTHANDS, Shorthand, TrainingConfig};

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Tensor};

use crate::checkpoint::Checkpoint;
use crate::dist::{DistributedEnvironment, GradReducer, ProcessGroup};
use crate::metrics::{EvalMetrics, MetricsSink, Record, console_line};
use crate::shim;
use crate::{Error, Result};
use nonfinite::NonFinite;
use step::{Executor, StepContext, StepInfo};
use window::{Flops, Reading, Window};

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
    config: TrainingConfig,
    sinks: Vec<Box<dyn MetricsSink>>,
    progress: bool,
    staged: bool,
    checkpoints: Option<Checkpointing>,
    resume: Option<Checkpoint>,
    resume_changes: ResumeChanges,
    group: Option<Arc<ProcessGroup>>,
    tokenizer: Option<String>,
    stop_on_signals: bool,
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
    pub fn new(config: TrainingConfig) -> Self {
        Self {
            config,
            sinks: Vec::new(),
            progress: true,
            staged: false,
            checkpoints: None,
            resume: None,
            resume_changes: ResumeChanges::default(),
            group: None,
            tokenizer: None,
            stop_on_signals: false,
        }
    }

    /// While the loop runs, a first SIGTERM (a cluster's preemption) or SIGINT (Ctrl-C) stops
    /// the run after the current step (with several ranks, at the next log point, every rank
    /// together), with a checkpoint of that step where checkpoints are on; a second SIGINT ends
    /// the process at once. The experiment binaries' trainers do.
    pub fn with_stop_on_signals(mut self) -> Self {
        self.stop_on_signals = true;
        self
    }

    /// The fingerprint of the tokenizer that makes the run's token ids
    /// ([`crate::Tokenizer::fingerprint`]): checkpoints record it, and a resume with another
    /// tokenizer is refused (its ids would mean other text to the trained embedding).
    /// `#[experiment]` sets it.
    pub fn set_tokenizer_fingerprint(&mut self, fingerprint: Option<String>) {
        self.tokenizer = fingerprint;
    }

    /// Whether this trainer saves checkpoints ([`Trainer::with_checkpoints`]).
    pub fn keeps_checkpoints(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// Adds `files` (name, contents) to every checkpoint this trainer saves, e.g. the
    /// tokenizer's: call it after [`Trainer::with_checkpoints`] (without checkpoints it keeps
    /// nothing). A name that is not a plain file name, or that a checkpoint's own file has, is
    /// refused.
    pub fn keep_in_checkpoints(&mut self, files: Vec<(String, Vec<u8>)>) -> Result<()> {
        match self.checkpoints.as_mut() {
            Some(checkpoints) => checkpoints.add_files(files),
            None => Ok(()),
        }
    }

    /// Trains as one rank of `env`: gradients, losses and token counts are summed over its
    /// process group, and rank 0's weights are every rank's at the start. An environment of
    /// several processes without a process group is an error: each would train its own model.
    pub fn join(&mut self, env: &impl DistributedEnvironment) -> Result<()> {
        let world = env.world_size();
        match env.process_group() {
            None if world > 1 => Err(Error::Distributed(format!(
                "the distributed environment `{}` has {world} processes but no process group \
                 (`DistributedEnvironment::process_group`): each process would train a model \
                 of its own; use `C10dEnv::from_env(..)`",
                std::any::type_name_of_val(env)
            ))),
            Some(group) if group.size() != world || group.rank() != env.rank() => {
                Err(Error::Distributed(format!(
                    "the distributed environment says rank {} of {world}, its process group \
                     rank {} of {}",
                    env.rank(),
                    group.rank(),
                    group.size()
                )))
            }
            group => {
                self.group = group.filter(|g| g.size() > 1);
                Ok(())
            }
        }
    }

    /// Saves checkpoints as `checkpoints` says (every N steps and at the end).
    pub fn with_checkpoints(mut self, checkpoints: Checkpointing) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Starts the run from `checkpoint`: weights, optimizer, scheduler and the training
    /// dataloader's position, then the steps after its step. What the run changes from the
    /// checkpoint's configuration (the experiment binaries find it) is given with
    /// [`Trainer::with_resume_changes`]; without it only the batch size the checkpoint
    /// recorded is checked.
    pub fn resume_from(mut self, checkpoint: Checkpoint) -> Self {
        self.resume = Some(checkpoint);
        self
    }

    /// What the run changes from the checkpoint it resumes from, which the restored
    /// dataloader must accept (a batch size, moved data): refused where it cannot.
    pub fn with_resume_changes(mut self, changes: ResumeChanges) -> Self {
        self.resume_changes = changes;
        self
    }

    /// Whether the run starts from a checkpoint.
    pub fn resumes(&self) -> bool {
        self.resume.is_some()
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
    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// Trains for `steps` steps over wired components (`titan::experiment::wire(&mut model)
    /// .train_data(..).loss(..).optimizer(..).lr_scheduler(..)`), evaluating every `eval_every`
    /// steps and at the end when a validation dataloader was wired.
    pub fn run<Lab>(&mut self, mut parts: Parts<'_, Lab>) -> Result<Summary> {
        let cfg = self.config.clone();
        cfg.validate()?;
        // A schedule that ends before the run (e.g. its total_steps kept from a `--config`
        // file while `--steps` grew) trains the rest at its final rate: said, not silent.
        // One that ends after it (e.g. `..WarmupConfig::default()`'s 1000 steps in a run of
        // 250) never decays: said too.
        match parts.update.schedule_ends() {
            Some(end) if end < cfg.steps => tracing::warn!(
                "training.steps = {} runs past the LR schedule's end (its total_steps = {end}): \
                 steps {} to {} train at its final rate; set the schedule's total_steps to \
                 training.steps (a --config file that sets it keeps it when --steps changes)",
                cfg.steps,
                end + 1,
                cfg.steps
            ),
            Some(end) if end > cfg.steps => tracing::warn!(
                "training.steps = {} stops before the LR schedule's end (its total_steps = \
                 {end}): the run ends partway through the schedule, before its rate has \
                 decayed; set the schedule's total_steps to training.steps",
                cfg.steps
            ),
            _ => {}
        }
        // An optimizer over other tensors than the model's would train nothing: refused now.
        let left_out =
            coverage::optimizer_updates_the_model(&parts.params, parts.update.updates())?;
        coverage::warn_left_out(&left_out, parts.params.len());
        if parts.update.base_lr() == 0.0 {
            tracing::warn!(
                "the optimizer's configured learning rate (`lr`) is 0: a schedule that scales it \
                 leaves every weight as it is"
            );
        }
        if parts.device.is_cuda() {
            shim::set_cuda_matmul_tf32(cfg.tf32)?;
        }
        let group = self.group.clone();
        let group = group.as_deref();
        if group.is_none() {
            crate::dist::refuse_ranks_alone("training")?;
        }
        let resumed = match &self.resume {
            Some(checkpoint) => {
                let (step, ranks, skipped) = checkpointing::restore(
                    checkpoint,
                    &mut parts,
                    self.tokenizer.as_deref(),
                    &cfg.batching(),
                    &self.resume_changes,
                    group,
                )?;
                // Restored: the sinks may now set aside what the stopped run logged after it.
                for sink in &mut self.sinks {
                    sink.resumed(step)?;
                }
                if self.writes_metrics() {
                    for sink in &mut parts.sinks {
                        sink.resumed(step)?;
                    }
                }
                Some((step, ranks, checkpoint, skipped))
            }
            None => None,
        };
        if let Some(group) = group {
            // Every rank starts from rank 0's weights (equal already when each initialised
            // from the same seed or checkpoint; now certainly).
            let _guard = tch::no_grad_guard();
            let weights: Vec<Tensor> = parts
                .params
                .iter()
                .map(|(_, p)| p.shallow_clone())
                .collect();
            group.broadcast(&weights, 0)?;
        }
        let reducer = match &self.group {
            Some(group) => Some(GradReducer::new(Arc::clone(group), &parts.params)?),
            None => None,
        };
        let start = resumed.map_or(0, |(step, ..)| step);
        if let Some(group) = group {
            same_start(group, start, parts.device)?;
        }
        let buckets = reducer.as_ref().map(GradReducer::buckets);
        self.announce(
            &parts,
            &cfg,
            resumed.map(|(step, ranks, c, _)| (step, ranks, c.dir())),
            buckets,
        );
        // Throughput is counted over every rank and reported per device, as torchtitan's.
        let ranks = group.map_or(1, ProcessGroup::size) as f64;
        let peak = crate::metrics::peak_flops(parts.device, cfg.peak_flops);
        let mut non_finite = match resumed.and_then(|(.., skipped)| skipped) {
            Some(skipped) => NonFinite::restored(parts.device, skipped)?,
            None => NonFinite::new(parts.device)?,
        };
        let accum = cfg.grad_accum_steps as u64;
        let bar = self.progress_bar(cfg.steps);
        bar.set_position(start);
        let started = Instant::now();
        let mut window = Window::new();
        let mut pace = pace::EpochPace::default();
        let mut last_loss = f64::NAN;
        let mut val_loss = None;
        let progress = self.progress;
        let notice = move |message: &str| {
            if progress {
                eprintln!("note: {message}");
            }
        };
        let mut executor = Executor::choose(&parts, &cfg, start, self.staged, &notice)?;
        let mut info = StepInfo::default();
        // Non-finite steps the optimizer skips are tolerated up to this many in a row.
        let skip_limit = |info: &StepInfo| info.skipping.then_some(cfg.max_skipped_steps);
        let signals = match self.stop_on_signals {
            true => Some(stop::StopSignals::arm()?),
            false => None,
        };
        let rank = group.map_or(0, ProcessGroup::rank);
        let mut profiling = profiling::Profiling::new(&cfg, rank, parts.device)?;
        for step in start + 1..=cfg.steps {
            let scope = profiling.as_mut().and_then(|p| p.before(step));
            let lr = parts.update.schedule();
            let mut counted = None;
            let mut cx = StepContext {
                config: &cfg,
                window: &mut window,
                info: &mut info,
                notice: &notice,
                reducer: reducer.as_ref(),
                counted: &mut counted,
            };
            let (step_loss, grad_norm) = executor.step(step, &mut parts, &mut cx)?;
            if step == start + 1 {
                // One host read, at the first step: a loss that counts no token trains nothing.
                if let Some(counted) = &counted {
                    coverage::tokens_counted(counted, step, cfg.grad_accum_steps)?;
                }
                // The first step's gradients (the next step's zeroing keeps them defined).
                let missing = coverage::gradients_reached(&parts.params, step)?;
                coverage::warn_no_gradient(&missing, parts.params.len(), step);
            }
            non_finite.record(step, &step_loss, &grad_norm)?;
            window.steps += 1;
            bar.inc(1);
            drop(scope);
            if let Some(traced) = profiling.as_mut().and_then(|p| p.after(step, cfg.steps))
                && self.progress
            {
                let steps = match traced.first == traced.last {
                    true => format!("step {}", traced.last),
                    false => format!("steps {}-{}", traced.first, traced.last),
                };
                bar.suspend(|| eprintln!("profile: {steps} traced: {}", traced.path.display()));
            }

            let log_now = step % cfg.log_every == 0 || step == cfg.steps;
            // A signal stops one process after the step it arrived in (a preemption's grace
            // period is short); several ranks agree at log points, so all stop at one step.
            let mut stop: Option<&str> = None;
            if let Some(signals) = signals.as_ref().filter(|_| group.is_none() || log_now) {
                stop = signals.asked();
                if let Some(group) = group {
                    let flag = if stop.is_some() { 1.0 } else { 0.0 };
                    let any = group.max_values(&[flag], parts.device)?;
                    if any.first().is_some_and(|f| *f > 0.0) {
                        stop = stop.or(Some("another rank's signal"));
                    }
                }
            }
            if log_now {
                // A checkpoint written in the background: its failure is this run's now.
                if let Some(checkpoints) = self.checkpoints.as_mut() {
                    report(self.progress, &bar, checkpoints.finished()?);
                }
                // The only host syncs of the loop: values are read at log points alone. With data
                // parallel, within the group's timeout: a replayed graph's reductions are in no
                // watchdog, so a rank that stopped or hung is noticed here.
                if let Some(group) = group
                    && !shim::finish_within(parts.device, group.timeout())?
                {
                    return Err(Error::Distributed(format!(
                        "step {step}: the device's work (the gradient all-reduce among it) did \
                         not finish within the process group's timeout of {} s \
                         (parallelism.timeout_s): another rank stopped or hung",
                        group.timeout().as_secs()
                    )));
                }
                crate::device::synchronize(parts.device);
                let skipped = non_finite.check(accum, info.epoch, skip_limit(&info))?;
                // Data that a step's batches read whole, more than once: every step trains on
                // the same few documents (only the epochs' pace shows it).
                if self.writes_metrics()
                    && let Some(said) = pace.check(step, info.epoch)
                {
                    tracing::warn!("{said}");
                }
                if let Some(group) = group {
                    // Every rank's tokens (tokens/s is their mean per device).
                    let tokens = group.sum_values(&[window.tokens as f64], parts.device)?;
                    window.tokens = tokens[0] as i64;
                }
                let loss_value = step_loss.f_double_value(&[])?;
                let norm_value = grad_norm.f_double_value(&[])?;
                last_loss = loss_value;
                let flops = Flops {
                    per_token: (parts.flops_per_token)(info.seq_len),
                    peak,
                    devices: ranks,
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
                let mut metrics = window.finish(reading, info.epoch, flops, memory);
                metrics.skipped_steps = skipped.total;
                self.emit(&bar, &mut parts.sinks, &Record::Step(metrics))?;
                bar.set_message(format!("loss {loss_value:.3}"));
            }
            let eval_now = cfg.eval_every > 0 && step % cfg.eval_every == 0;
            if let Some(validate) = parts
                .validate
                .as_mut()
                .filter(|_| eval_now || step == cfg.steps)
            {
                non_finite.check(accum, info.epoch, skip_limit(&info))?;
                let (mut value, tokens) =
                    global_mean(group, parts.device, validate(cfg.eval_batches)?)?;
                // No token counted: not a loss of 0 (a perfect model), and not a reason to
                // lose the run's training: NaN, said.
                if let Err(e) = eval::counted_some(tokens, cfg.eval_batches) {
                    tracing::warn!("step {step}: {e}: the validation loss is written as NaN");
                    value = f64::NAN;
                }
                val_loss = Some(value);
                self.emit(
                    &bar,
                    &mut parts.sinks,
                    &Record::Eval(EvalMetrics {
                        step,
                        val_loss: value,
                        val_perplexity: value.exp(),
                        val_tokens: tokens,
                    }),
                )?;
                window.restart();
            }
            if let Some(checkpoints) = self
                .checkpoints
                .as_mut()
                .filter(|c| c.due(step, cfg.steps) || stop.is_some())
            {
                // Never a checkpoint of non-finite weights.
                crate::device::synchronize(parts.device);
                non_finite.check(accum, info.epoch, skip_limit(&info))?;
                let tokenizer = self.tokenizer.clone();
                let previous = checkpoints.save(
                    step,
                    &parts,
                    &non_finite,
                    tokenizer,
                    &cfg.batching(),
                    group,
                )?;
                report(self.progress, &bar, previous);
                // The copy is not a step: the next log line's rates leave it out.
                window.restart();
            }
            if let Some(why) = stop {
                // A trace still open goes unwritten rather than record the stop.
                drop(profiling.take());
                let kept = match self.checkpoints.as_mut() {
                    Some(checkpoints) => {
                        let saved = checkpoints.finish()?;
                        let at = saved
                            .as_ref()
                            .map(|s| s.checkpoint.dir().display().to_string());
                        report(self.progress, &bar, saved);
                        match at {
                            Some(dir) => format!(
                                "its checkpoint is {dir}; run the same command again to resume"
                            ),
                            None => "this rank writes no checkpoint (rank 0 does)".to_string(),
                        }
                    }
                    None => "no checkpoint (training.checkpoint_every = 0)".to_string(),
                };
                bar.finish_and_clear();
                return Err(Error::Stopped(format!(
                    "stopped by {why} after step {step}: {kept}"
                )));
            }
        }
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            report(self.progress, &bar, checkpoints.finish()?);
        }
        bar.finish_and_clear();
        non_finite.ended_finite(cfg.steps)?;
        Ok(Summary {
            last_loss,
            val_loss,
            steps: cfg.steps,
            elapsed: started.elapsed(),
        })
    }

    /// The run's first line: parameters, device, ranks (and their gradient buckets), steps, and
    /// the checkpoint it resumes from.
    fn announce<Lab>(
        &self,
        parts: &Parts<'_, Lab>,
        cfg: &TrainingConfig,
        resumed: Option<(u64, usize, &std::path::Path)>,
        buckets: Option<usize>,
    ) {
        if !self.progress {
            return;
        }
        let count: i64 = parts.params.iter().map(|(_, p)| p.numel() as i64).sum();
        let on = match parts.device {
            Device::Cpu => format!(
                "Cpu ({} threads; MKL {})",
                tch::get_num_threads(),
                if shim::mkl_vendor_check_off() {
                    "kernels by instruction set"
                } else {
                    "vendor check on"
                }
            ),
            device if cfg.tf32 => format!("{device:?} (float32 matmuls in TF32)"),
            device => format!("{device:?}"),
        };
        let ranks_now = self.group.as_ref().map_or(1, |g| g.size());
        let from = resumed.map_or_else(String::new, |(step, ranks, dir)| {
            let dealt = if ranks == ranks_now {
                String::new()
            } else {
                format!(
                    "; it was written by {ranks} rank(s), whose unread data is now dealt to \
                     {ranks_now}, and the global batch is {ranks_now} × the per-rank batch"
                )
            };
            format!(", resuming after step {step} ({}){dealt}", dir.display())
        });
        let clipping = if cfg.max_grad_norm == 0.0 {
            "; gradient clipping off (max_grad_norm = 0)"
        } else {
            ""
        };
        let ranks = self.group.as_ref().map_or_else(String::new, |g| {
            format!(
                " × {} ranks ({:?}, data parallel, {} gradient buckets)",
                g.size(),
                g.backend(),
                buckets.unwrap_or(0)
            )
        });
        eprintln!(
            "training {:.2}M parameters on {on}{ranks} for {} steps{from}{clipping}",
            count as f64 / 1e6,
            cfg.steps
        );
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

    /// Whether this process writes the run's metrics: rank 0 of its group, or a process alone.
    fn writes_metrics(&self) -> bool {
        match &self.group {
            Some(group) => group.rank() == 0,
            None => crate::dist::speaks(),
        }
    }

    /// Sends `record` to the trainer's sinks, the experiment's `sinks` (on rank 0 only: the
    /// records are global) and the console.
    fn emit(
        &mut self,
        bar: &ProgressBar,
        sinks: &mut [&mut (dyn MetricsSink + '_)],
        record: &Record,
    ) -> Result<()> {
        for sink in &mut self.sinks {
            sink.record(record)?;
        }
        if self.writes_metrics() {
            for sink in sinks {
                sink.record(record)?;
            }
        }
        if self.progress {
            bar.suspend(|| eprintln!("{}", console_line(record)));
        }
        Ok(())
    }
}

/// A mean over `count` tokens on each rank, as the mean over every rank's tokens (reduced on
/// `device`, the backend's).
fn global_mean(
    group: Option<&ProcessGroup>,
    device: Device,
    (mean, count): (f64, f64),
) -> Result<(f64, f64)> {
    let Some(group) = group else {
        return Ok((mean, count));
    };
    let sums = group.sum_values(&[mean * count, count], device)?;
    Ok((sums[0] / sums[1].max(1.0), sums[1]))
}

/// Checks that every rank starts after the same step: a rank that found other checkpoints (an
/// output directory that is not shared) would train another run beside this one.
fn same_start(group: &ProcessGroup, start: u64, device: Device) -> Result<()> {
    let bounds = group.max_values(&[start as f64, -(start as f64)], device)?;
    let (latest, earliest) = (bounds[0], -bounds[1]);
    if latest != earliest {
        return Err(Error::Distributed(format!(
            "the ranks start from different steps ({earliest} to {latest}; rank {} from \
             {start}): every rank must see the same output directory and its checkpoints (a \
             shared filesystem)",
            group.rank()
        )));
    }
    Ok(())
}

/// Says where a checkpoint went and what it cost.
fn report(progress: bool, bar: &ProgressBar, saved: Option<checkpointing::Saved>) {
    if let Some(saved) = saved.filter(|_| progress) {
        bar.suspend(|| {
            eprintln!(
                "checkpoint: {} (copied in {:.2}s, then written in {:.2}s beside training)",
                saved.checkpoint.dir().display(),
                saved.copied.as_secs_f64(),
                saved.written.as_secs_f64()
            )
        });
    }
}
