//! Traces of chosen steps, as torchtitan's `profiling` section makes them: every
//! `training.profile_every` steps, the last `training.profile_steps` of the span run under
//! libtorch's Kineto profiler (each step a `ProfilerStep#N` scope), and each rank writes its
//! trace to `output_dir/profile/step-N/rankR.pt.trace.json`.

use std::path::PathBuf;

use tch::Device;

use super::settings::TrainingConfig;
use crate::shim::{Profiler, Scope};
use crate::{Error, Result};

/// The run's tracing: which steps, where the traces go, and the trace being taken.
pub(crate) struct Profiling {
    every: u64,
    steps: u64,
    dir: PathBuf,
    rank: usize,
    device: Device,
    /// The first step of the trace being taken, and its profiler.
    running: Option<(u64, Profiler)>,
}

/// A trace written: its steps and its file.
pub(crate) struct Traced {
    pub first: u64,
    pub last: u64,
    pub path: PathBuf,
}

impl Profiling {
    /// The tracing `config` asks for on `rank` (none when `profile_every` is 0). The profiler is
    /// started and stopped once now, so a machine where it cannot run says so before step 1,
    /// naming the setting, not hours into the run.
    pub(crate) fn new(
        config: &TrainingConfig,
        rank: usize,
        device: Device,
    ) -> Result<Option<Self>> {
        if config.profile_every == 0 {
            return Ok(None);
        }
        // A trace ends a span of profile_every steps: a shorter run has none, said.
        let traced = config.profile_steps.clamp(1, config.profile_every);
        if config.steps + traced <= config.profile_every {
            tracing::warn!(
                "training.profile_every = {} and training.steps = {}: no step is traced (the \
                 first trace covers steps {} to {})",
                config.profile_every,
                config.steps,
                config.profile_every + 1 - traced,
                config.profile_every
            );
        }
        drop(Profiler::start(device.is_cuda()).map_err(|e| {
            Error::config(
                "training.profile_every",
                config.profile_every,
                format!("libtorch's profiler cannot start here ({e}); 0 traces nothing"),
            )
        })?);
        Ok(Some(Self {
            every: config.profile_every,
            steps: config.profile_steps.clamp(1, config.profile_every),
            dir: config.output_dir().join("profile"),
            rank,
            device,
            running: None,
        }))
    }

    /// Before step `step`: starts the profiler when the step opens a traced span; the step's
    /// scope while tracing (held until the step ends). A trace that cannot start is said and
    /// skipped: training goes on.
    pub(crate) fn before(&mut self, step: u64) -> Option<Scope<'_>> {
        let last = step.div_ceil(self.every) * self.every;
        if self.running.is_none() && step == last + 1 - self.steps {
            match Profiler::start(self.device.is_cuda()) {
                Ok(profiler) => self.running = Some((step, profiler)),
                Err(e) => tracing::warn!("profile: step {step} is not traced: {e}"),
            }
        }
        let (_, profiler) = self.running.as_ref()?;
        match profiler.scope(&format!("ProfilerStep#{step}")) {
            Ok(scope) => Some(scope),
            Err(e) => {
                tracing::warn!("profile: step {step} has no ProfilerStep scope: {e}");
                None
            }
        }
    }

    /// After step `step`: at a traced span's last step, or the run's (`end`), waits for the
    /// device, stops the profiler and writes the trace. A trace that cannot be written is said
    /// (naming the file) and left out: training goes on.
    pub(crate) fn after(&mut self, step: u64, end: u64) -> Option<Traced> {
        if !(step.is_multiple_of(self.every) || step == end) {
            return None;
        }
        let (first, profiler) = self.running.take()?;
        if let Device::Cuda(index) = self.device {
            tch::Cuda::synchronize(index as i64);
        }
        let dir = self.dir.join(format!("step-{step}"));
        let path = dir.join(format!("rank{}.pt.trace.json", self.rank));
        let written = std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, e))
            .and_then(|()| profiler.save(&path));
        match written {
            Ok(()) => Some(Traced {
                first,
                last: step,
                path,
            }),
            Err(e) => {
                tracing::warn!("profile: the trace of steps {first}-{step} is not written: {e}");
                None
            }
        }
    }
}
