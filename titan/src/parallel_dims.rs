//! `ParallelDims`: how the processes of a run split the work (data parallel only, for now).
//! It is built from a distributed environment, and dataloaders take it: so a dataloader cannot
//! exist before the environment that knows the ranks, a fact the compiler enforces.

use tch::Device;

use crate::dist::DistributedEnvironment;
use crate::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// A data-parallel layout: this process's rank among the data-parallel replicas. Only
/// [`ParallelDims`] implements it, so only a distributed environment can produce one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a data-parallel layout",
    label = "dataloaders take the run's `ParallelDims`",
    note = "build it from the distributed environment: `#[build(ParallelDims::new(&dist, device)?)] dims: ParallelDims`, then pass `&dims`"
)]
pub trait DataParallel: sealed::Sealed {
    /// This process's data-parallel rank.
    fn dp_rank(&self) -> usize;
    /// Number of data-parallel replicas.
    fn dp_degree(&self) -> usize;
    /// The device this process computes on.
    fn device(&self) -> Device;
}

/// The run's parallel layout, derived from the distributed environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelDims {
    dp_rank: usize,
    dp_degree: usize,
    device: Device,
}

impl ParallelDims {
    /// Rank `rank` of `world` simulated data-parallel ranks on CPU (for tests).
    #[cfg(test)]
    pub(crate) fn simulated_cpu(rank: usize, world: usize) -> Self {
        let env = crate::dist::LocalEnv::simulated(rank, world);
        Self::new(&env, Device::Cpu).expect("a simulated layout is valid")
    }

    /// Data parallel over every process of `env`, computing on `device` (on CUDA, the GPU of
    /// the process's local rank).
    pub fn new(env: &impl DistributedEnvironment, device: Device) -> Result<Self> {
        if env.world_size() == 0 || env.rank() >= env.world_size() {
            return Err(Error::config(
                "RANK",
                env.rank(),
                format!("must be below WORLD_SIZE = {}", env.world_size()),
            ));
        }
        let device = match device {
            Device::Cuda(_) if env.world_size() > 1 => Device::Cuda(env.local_rank()),
            other => other,
        };
        Ok(Self {
            dp_rank: env.rank(),
            dp_degree: env.world_size(),
            device,
        })
    }
}

impl sealed::Sealed for ParallelDims {}

impl DataParallel for ParallelDims {
    fn dp_rank(&self) -> usize {
        self.dp_rank
    }
    fn dp_degree(&self) -> usize {
        self.dp_degree
    }
    fn device(&self) -> Device {
        self.device
    }
}
