//! `ParallelDims`: how the processes of a run split the work, on torchtitan's axes
//! (`dp_replicate`, `dp_shard`, `cp`, `tp`, `pp`; one may be -1, inferred from the world size).
//! Only data parallelism is implemented: the other axes are accepted at 1, and `dp_shard` ranks
//! split the data as `dp_replicate` ranks do (parameters are not sharded yet). It is built from
//! a distributed environment, and dataloaders take it: so a dataloader cannot exist before the
//! environment that knows the ranks, a fact the compiler enforces.

use serde::{Deserialize, Serialize};
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

/// The parallel axes of a run, as torchtitan names them (`[parallelism]`): their product is
/// the world size, and one of them may be -1 (inferred).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParallelConfig {
    /// Data-parallel replicas (DDP, HSDP's replicate axis).
    pub dp_replicate: i64,
    /// Data-parallel shards (FSDP's axis); -1: whatever the world size leaves.
    pub dp_shard: i64,
    /// Context parallelism (only 1 is implemented).
    pub cp: i64,
    /// Tensor parallelism (only 1 is implemented).
    pub tp: i64,
    /// Pipeline parallelism (only 1 is implemented).
    pub pp: i64,
    /// Seconds a rank waits for the others (joining the process group, each collective)
    /// before it stops with an error; torchtitan's `comm.init_timeout_seconds`.
    pub timeout_s: u64,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        Self {
            dp_replicate: 1,
            dp_shard: -1,
            cp: 1,
            tp: 1,
            pp: 1,
            timeout_s: 300,
        }
    }
}

impl ParallelConfig {
    /// How long a rank waits for the others (`timeout_s`: 1 second to a week).
    pub fn timeout(&self) -> Result<std::time::Duration> {
        const WEEK: u64 = 7 * 24 * 3600;
        if !(1..=WEEK).contains(&self.timeout_s) {
            return Err(Error::config(
                "parallelism.timeout_s",
                self.timeout_s,
                format!("must be from 1 second to a week ({WEEK})"),
            ));
        }
        Ok(std::time::Duration::from_secs(self.timeout_s))
    }

    /// Checks what does not depend on the world size (each axis, at most one inferred, the
    /// timeout): `#[experiment]` calls it before anything is built.
    pub fn validate(&self) -> Result<()> {
        self.timeout()?;
        self.checked_axes().map(|_| ())
    }

    /// The axes in the order dp_replicate, dp_shard, cp, tp, pp, each at least 1 or -1
    /// (inferred, at most one), and those not implemented at most 1.
    fn checked_axes(&self) -> Result<[(&'static str, i64); 5]> {
        let axes = [
            ("dp_replicate", self.dp_replicate),
            ("dp_shard", self.dp_shard),
            ("cp", self.cp),
            ("tp", self.tp),
            ("pp", self.pp),
        ];
        let inferred: Vec<&str> = axes
            .iter()
            .filter(|(_, d)| *d == -1)
            .map(|(n, _)| *n)
            .collect();
        if inferred.len() > 1 {
            return Err(Error::config(
                &format!("parallelism.{}", inferred[1]),
                -1,
                format!(
                    "only one axis may be -1 (inferred), and `{}` already is",
                    inferred[0]
                ),
            ));
        }
        if let Some((name, d)) = axes.iter().find(|(_, d)| *d == 0 || *d < -1) {
            return Err(Error::config(
                &format!("parallelism.{name}"),
                d,
                "must be at least 1, or -1 to infer it from the world size",
            ));
        }
        // Only data parallelism runs: the other axes are 1 (or -1, inferred, which must come
        // out as 1).
        for (name, d) in &axes[2..] {
            if *d > 1 {
                return Err(Error::config(
                    &format!("parallelism.{name}"),
                    d,
                    "is not implemented yet (titan runs data parallelism only): set it to 1 and \
                     use dp_replicate or dp_shard",
                ));
            }
        }
        Ok(axes)
    }

    /// The axes' degrees for `world` processes, in the order dp_replicate, dp_shard, cp, tp,
    /// pp: a -1 inferred, each checked, their product equal to `world`. Errors name the axis and
    /// the numbers.
    pub fn degrees(&self, world: usize) -> Result<[(&'static str, usize); 5]> {
        let axes = self.checked_axes()?;
        let known: i64 = axes.iter().map(|(_, d)| *d).filter(|d| *d > 0).product();
        let world = world as i64;
        let mut out = [("", 0usize); 5];
        for (slot, (name, d)) in out.iter_mut().zip(axes) {
            let d = if d == -1 {
                if world % known != 0 {
                    return Err(Error::config(
                        &format!("parallelism.{name}"),
                        -1,
                        format!(
                            "cannot be inferred: the world size {world} is not a multiple of \
                             the other axes' product {known}"
                        ),
                    ));
                }
                world / known
            } else {
                d
            };
            *slot = (name, d as usize);
        }
        if let Some((name, d)) = out[2..].iter().find(|(_, d)| *d != 1) {
            return Err(Error::config(
                &format!("parallelism.{name}"),
                -1,
                format!(
                    "would be inferred as {d}, which is not implemented yet (titan runs data \
                     parallelism only); let dp_shard be the inferred axis"
                ),
            ));
        }
        let product: usize = out.iter().map(|(_, d)| d).product();
        if product as i64 != world {
            let shown: Vec<String> = out.iter().map(|(n, d)| format!("{n} {d}")).collect();
            return Err(Error::config(
                "parallelism",
                shown.join(" × "),
                format!("the axes' product is {product}, but the world size is {world}"),
            ));
        }
        Ok(out)
    }
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
        Self::with_config(env, &ParallelConfig::default(), device)
    }

    /// The layout `config` asks for over the processes of `env` (see [`ParallelConfig`]),
    /// computing on `device`.
    pub fn with_config(
        env: &impl DistributedEnvironment,
        config: &ParallelConfig,
        device: Device,
    ) -> Result<Self> {
        if env.world_size() == 0 || env.rank() >= env.world_size() {
            return Err(Error::config(
                "RANK",
                env.rank(),
                format!("must be below WORLD_SIZE = {}", env.world_size()),
            ));
        }
        let degrees = config.degrees(env.world_size())?;
        let device = match device {
            Device::Cuda(_) if env.world_size() > 1 => {
                let gpus = tch::Cuda::device_count().max(0) as usize;
                if env.local_rank() >= gpus {
                    return Err(Error::config(
                        "LOCAL_RANK",
                        env.local_rank(),
                        format!(
                            "selects this rank's GPU, but libtorch sees {gpus}: start at most \
                             {gpus} ranks per machine"
                        ),
                    ));
                }
                if let Device::Cuda(asked) = device
                    && asked != 0
                    && asked != env.local_rank()
                {
                    tracing::warn!(
                        "training.device = cuda:{asked} is not this rank's GPU: with several \
                         ranks each takes its LOCAL_RANK's, cuda:{} (choose the GPUs with \
                         CUDA_VISIBLE_DEVICES)",
                        env.local_rank()
                    );
                }
                Device::Cuda(env.local_rank())
            }
            other => other,
        };
        // With cp, tp and pp at 1, every rank is its own data-parallel rank.
        Ok(Self {
            dp_rank: env.rank(),
            dp_degree: degrees[0].1 * degrees[1].1,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dp_replicate: i64, dp_shard: i64, tp: i64) -> ParallelConfig {
        ParallelConfig {
            dp_replicate,
            dp_shard,
            tp,
            ..ParallelConfig::default()
        }
    }

    #[test]
    fn one_axis_is_inferred_and_the_product_is_the_world_size() -> Result<()> {
        let d = ParallelConfig::default().degrees(8)?;
        assert_eq!(d[1], ("dp_shard", 8));
        let d = config(2, -1, 1).degrees(8)?;
        assert_eq!((d[0].1, d[1].1), (2, 4));
        let err = config(3, -1, 1).degrees(8).expect_err("8 / 3").to_string();
        assert!(
            err.contains("dp_shard") && err.contains("8") && err.contains("3"),
            "{err}"
        );
        let err = config(2, 2, 1).degrees(8).expect_err("4 ≠ 8").to_string();
        assert!(
            err.contains("product is 4") && err.contains("world size is 8"),
            "{err}"
        );
        let err = config(-1, -1, 1)
            .degrees(8)
            .expect_err("two inferred")
            .to_string();
        assert!(err.contains("only one axis"), "{err}");
        let err = config(0, -1, 1).degrees(8).expect_err("zero").to_string();
        assert!(err.contains("parallelism.dp_replicate"), "{err}");
        Ok(())
    }

    #[test]
    fn axes_other_than_data_parallel_are_refused_above_1() {
        let err = config(1, -1, 2).degrees(8).expect_err("tp").to_string();
        assert!(
            err.contains("parallelism.tp") && err.contains("not implemented"),
            "{err}"
        );
        let env = crate::dist::LocalEnv::simulated(3, 4);
        let dims = ParallelDims::with_config(&env, &config(2, 2, 1), Device::Cpu).expect("2 × 2");
        assert_eq!((dims.dp_rank(), dims.dp_degree()), (3, 4));
    }
}
