//! The `DistributedEnvironment` role: who this process is among the training processes, and
//! the c10d process group they train through. [`LocalEnv`] is one process; [`C10dEnv`] reads
//! torchrun's variables ([`Torchrun`]) and joins torch's own process group (Gloo on CPU, NCCL
//! on CUDA), once per process; [`launch`] starts the ranks on one machine without torchrun.

mod c10d;
mod ddp;
pub mod launch;
mod local;
mod torchrun;

pub use c10d::{C10dEnv, ProcessGroup, current, shutdown};
pub(crate) use ddp::GradReducer;
pub use local::LocalEnv;
pub use torchrun::{Torchrun, launch_rank};

use crate::Result;

/// Who this process is among the training processes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a distributed environment",
    label = "a distributed environment goes here",
    note = "a distributed environment implements `titan::DistributedEnvironment` (rank, world_size, local_rank, process_group); `LocalEnv::from_env()` is one process, `C10dEnv::from_env(..)` joins torch's process group"
)]
pub trait DistributedEnvironment {
    /// Global rank of this process.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Rank within this machine (selects the GPU).
    fn local_rank(&self) -> usize;
    /// The process group the ranks reduce gradients through; none for one process. An
    /// environment of several processes without one is refused by the trainer, since each
    /// process would train a model of its own.
    fn process_group(&self) -> Option<std::sync::Arc<ProcessGroup>> {
        None
    }
}

/// Whether this process writes the run's shared outputs (metrics, tokenizer, checkpoints,
/// exports): rank 0 of the process group, or of torchrun's `RANK` before a group exists.
pub fn writes_outputs() -> Result<bool> {
    Ok(match current() {
        Some(group) => group.rank() == 0,
        None => launch_rank()? == 0,
    })
}

/// Whether this process says what every rank finds alike (a warning, a note): rank 0, as
/// [`writes_outputs`]; a process whose rank cannot be read says it rather than stay silent.
pub(crate) fn speaks() -> bool {
    writes_outputs().unwrap_or(true)
}

/// Runs `f` on rank 0 first, then on every other rank once rank 0 is done (what writes a file
/// that the other ranks then read, e.g. a trained tokenizer; `f` learns whether it runs on rank
/// 0); in one process, just `f`. Launched as several ranks without a process group yet, it is
/// an error: each would write the same file.
pub fn rank_zero_first<T>(tag: &str, f: impl FnOnce(bool) -> Result<T>) -> Result<T> {
    match current().filter(|group| group.size() > 1) {
        Some(group) => group.rank_zero_first(tag, f),
        None => {
            refuse_ranks_alone(&format!("`{tag}` is built"))?;
            f(true)
        }
    }
}

/// An error naming `what` when torchrun (or `--nproc-per-node`) launched several ranks but
/// `what` runs without a process group: each rank would do it alone, writing the same files or
/// training a model of its own.
pub(crate) fn refuse_ranks_alone(what: &str) -> Result<()> {
    match Torchrun::from_env()? {
        Some(t) if t.world_size > 1 => Err(crate::Error::Distributed(format!(
            "{what} on rank {} of {} (WORLD_SIZE) without a process group: build the \
             experiment's `dist` with `C10dEnv::from_env(..)` before it (declare it earlier, or \
             pass it, or the `dims` made from it), or run one process",
            t.rank, t.world_size
        ))),
        _ => Ok(()),
    }
}

/// Variables read from `pairs` instead of the environment (tests).
#[cfg(test)]
pub(crate) fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}
