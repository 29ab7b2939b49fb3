//! How a step's device work runs, behind one interface ([`Executor::step`]): eagerly, op by op;
//! staged (each batch first copied into fixed buffers: the graph's data path, testable on CPU);
//! or as a CUDA graph captured once after a few eager warm-up steps and replayed, falling back to
//! staged steps when a batch no longer fits the captured buffers or capture fails.

use tch::Tensor;

use super::grads::{accumulate_across, clip_grad_norm};
use super::parts::Parts;
use super::settings::TrainingConfig;
use super::window::Window;
use crate::Result;
use crate::dist::GradReducer;
use crate::shim::{self, CudaGraph};

/// Eager steps before a CUDA graph is captured: lazy initialisation (cuBLAS handles,
/// allocator pools, the optimizer's state) happens outside the graph.
pub(crate) const GRAPH_WARMUP_STEPS: u64 = 3;

/// Host-side facts about the latest step's batches.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StepInfo {
    /// The training dataloader's epoch after the step's last batch.
    pub epoch: u64,
    /// Sequence length of the step's batches.
    pub seq_len: i64,
    /// Whether the optimizer skips a non-finite step on the device (else the run stops at the
    /// next log point, as soon as it sees one).
    pub skipping: bool,
}

/// What one step needs besides the parts: the settings, the metrics window it adds to, and
/// where notices go.
pub(crate) struct StepContext<'c> {
    pub config: &'c TrainingConfig,
    pub window: &'c mut Window,
    pub info: &'c mut StepInfo,
    pub notice: &'c dyn Fn(&str),
    /// The reduction of the step's gradients over the ranks (data parallel), if any.
    pub reducer: Option<&'c GradReducer>,
    /// The tokens the loss counted in the step (every rank's), as a device scalar, set by each
    /// step run op by op (not by a replayed graph).
    pub counted: &'c mut Option<Tensor>,
}

/// How steps execute.
pub(crate) enum Executor {
    /// Fetch, forward, backward and update, launched op by op.
    Eager,
    /// As eager, but each batch is first copied into fixed buffers (the graph's data path).
    Staged,
    /// Warm-up steps eagerly on a side stream, then one captured step replayed.
    Graph {
        graph: CudaGraph,
        /// The last warm-up step (the run's first steps, counted from where it starts).
        warm_until: u64,
        /// The captured step's loss and gradient norm, rewritten by every replay.
        outputs: Option<(Tensor, Tensor)>,
        /// Whether the capture waits (and the run was told): the gradient all-reduce reads a
        /// flag on the host while some parameter has had no gradient on any rank.
        deferred: bool,
    },
}

impl Executor {
    /// A CUDA graph where the run (its steps after `start`) can use one, else eager (`staged`:
    /// with fixed buffers); `notice` says why a graph was not used.
    pub fn choose<Lab>(
        parts: &Parts<'_, Lab>,
        config: &TrainingConfig,
        start: u64,
        staged: bool,
        notice: &dyn Fn(&str),
    ) -> Result<Self> {
        let eager = if staged { Self::Staged } else { Self::Eager };
        let warm_until = start + GRAPH_WARMUP_STEPS;
        if !(config.cuda_graph && parts.device.is_cuda()) || config.steps <= warm_until {
            return Ok(eager);
        }
        if !shim::has_cuda_graphs() {
            notice("this titan was built without CUDA's headers: no CUDA graph, eager steps");
            return Ok(eager);
        }
        if !parts.update.capturable() {
            notice(
                "the optimizer is not capturable (`Optimizer::capturable`): no CUDA graph, \
                 eager steps",
            );
            return Ok(eager);
        }
        Ok(Self::Graph {
            graph: CudaGraph::new(parts.device)?,
            warm_until,
            outputs: None,
            deferred: false,
        })
    }

    /// Runs step `step` (1-based): the step's mean loss and gradient norm, as device tensors.
    /// A graph that cannot serve this step turns this executor into [`Executor::Staged`].
    pub fn step<Lab>(
        &mut self,
        step: u64,
        parts: &mut Parts<'_, Lab>,
        cx: &mut StepContext<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let (result, fall_back) = match self {
            Self::Eager => (device_step(parts, cx, false)?, false),
            Self::Staged => {
                stage(parts, cx)?;
                (device_step(parts, cx, true)?, false)
            }
            // The warm-up, and its extension while data parallel's reduction cannot be captured.
            Self::Graph {
                graph,
                warm_until,
                outputs,
                deferred,
            } if step <= *warm_until
                || (outputs.is_none() && cx.reducer.is_some_and(|r| !r.capturable())) =>
            {
                if step > *warm_until && !*deferred {
                    (cx.notice)(&format!(
                        "step {step}: data parallel: some parameter has had no gradient on any \
                         rank yet, and until it has, the gradient all-reduce reads its flag on \
                         the host, which a CUDA graph cannot hold: warm-up steps go on until then"
                    ));
                    *deferred = true;
                }
                (
                    graph.on_side_stream(|| device_step(parts, cx, false))?,
                    false,
                )
            }
            Self::Graph { graph, outputs, .. } => graph_step(step, graph, outputs, parts, cx)?,
        };
        if fall_back {
            *self = Self::Staged;
        }
        Ok(result)
    }
}

/// A step after the warm-up: capture on first use, then replay; `true` when the run must go
/// on with staged steps.
fn graph_step<Lab>(
    step: u64,
    graph: &mut CudaGraph,
    outputs: &mut Option<(Tensor, Tensor)>,
    parts: &mut Parts<'_, Lab>,
    cx: &mut StepContext<'_>,
) -> Result<((Tensor, Tensor), bool)> {
    if !stage(parts, cx)? {
        (cx.notice)(&format!(
            "step {step}: a batch no longer fits the captured step's buffers (its shapes \
             changed, or its type lists no tensors through `Batch::tensors`): eager steps from \
             here"
        ));
        return Ok((device_step(parts, cx, true)?, true));
    }
    if outputs.is_none() {
        // The warm-up's blocks, cached on its side stream, are free now: give them back
        // rather than hold them beside the graph's pool. With data parallel, the capture holds
        // the gradient all-reduce too (NCCL's kernels, on the same communicator).
        shim::empty_cache(parts.device)?;
        let captured = graph.capture(|| device_step(parts, cx, true));
        // With data parallel every rank replays, or none: a rank stepping eagerly beside
        // replaying ones would pair its collectives with theirs on an untested path.
        let everywhere = match cx.reducer {
            Some(reducer) => reducer.all_ranks(captured.is_ok())?,
            None => captured.is_ok(),
        };
        match captured {
            Ok(captured) if everywhere => *outputs = Some(captured),
            Ok(_) => {
                (cx.notice)(&format!(
                    "step {step}: another rank could not capture the step as a CUDA graph: \
                     eager steps from here on every rank"
                ));
                return Ok((device_step(parts, cx, true)?, true));
            }
            Err(e) => {
                // Nothing captured ran: run this step's batches eagerly.
                (cx.notice)(&format!(
                    "step {step}: capturing the step as a CUDA graph failed ({e}): eager steps \
                     from here (`training.cuda_graph = false` skips the attempt)"
                ));
                return Ok((device_step(parts, cx, true)?, true));
            }
        }
    }
    match outputs {
        Some((loss, norm)) => {
            graph.replay()?;
            Ok(((loss.shallow_clone(), norm.shallow_clone()), false))
        }
        None => Ok((device_step(parts, cx, true)?, true)),
    }
}

/// Fetches the step's micro-batches into their slots; false when a batch cannot be staged.
fn stage<Lab>(parts: &mut Parts<'_, Lab>, cx: &mut StepContext<'_>) -> Result<bool> {
    let mut reusable = true;
    for slot in 0..cx.config.grad_accum_steps {
        let staged = parts.data.stage(slot)?;
        cx.window.data_wait += staged.wait;
        cx.window.tokens += staged.tokens;
        cx.info.epoch = staged.epoch;
        reusable &= staged.reusable;
    }
    Ok(reusable)
}

/// One step's device work: zero the gradients, run the micro-batches (fetched now, or
/// the `staged` ones), clip, update. Returns the step's mean loss and gradient norm (tensors).
fn device_step<Lab>(
    parts: &mut Parts<'_, Lab>,
    cx: &mut StepContext<'_>,
    staged: bool,
) -> Result<(Tensor, Tensor)> {
    parts.update.zero_grad()?;
    let loss = parts.loss.clone();
    let data = &mut parts.data;
    let (window, info) = (&mut *cx.window, &mut *cx.info);
    let accum = cx.config.grad_accum_steps;
    let (step_loss, counted) = accumulate_across(&parts.params, accum, cx.reducer, |slot| {
        if staged {
            let (sum, count, seq_len) = data.run_staged(slot, &*loss)?;
            info.seq_len = seq_len;
            return Ok((sum, count));
        }
        let fetched = data.next(&*loss)?;
        window.data_wait += fetched.wait;
        window.tokens += fetched.tokens;
        info.epoch = fetched.epoch;
        info.seq_len = fetched.seq_len;
        Ok((fetched.sum, fetched.count))
    })?;
    *cx.counted = Some(counted);
    let grad_norm = clip_grad_norm(&parts.params, cx.config.max_grad_norm)?;
    // A NaN or infinite loss or gradient norm never reaches the weights: the optimizer skips
    // the step on the device, with no host sync.
    let found_inf = step_loss
        .f_isfinite()?
        .f_logical_and(&grad_norm.f_to_device(step_loss.device())?.f_isfinite()?)?
        .f_logical_not()?
        .f_to_kind(tch::Kind::Float)?;
    info.skipping = parts.update.step_unless(&found_inf)?;
    Ok((step_loss, grad_norm))
}
