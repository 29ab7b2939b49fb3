//! The `DistributedEnvironment` role. Here: one process, with rank and world size read from
//! torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`), defaulting to a single process.

use crate::{Error, Result};

/// Who this process is among the training processes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a distributed environment",
    label = "a distributed environment goes here",
    note = "a distributed environment implements `titan::DistributedEnvironment` (rank, world_size, local_rank); `LocalEnv::from_env()` is the single-process one"
)]
pub trait DistributedEnvironment {
    /// Global rank of this process.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
    /// Rank within this machine (selects the GPU).
    fn local_rank(&self) -> usize;
}

/// The single-process environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEnv {
    rank: usize,
    world_size: usize,
    local_rank: usize,
}

impl LocalEnv {
    /// One process, rank 0, without reading the environment (tests, notebooks).
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
        }
    }

    /// Rank `rank` of `world_size` processes on one machine, for simulating data-parallel
    /// sharding in one process (each rank's dataloader is built from its own value).
    pub fn simulated(rank: usize, world_size: usize) -> Self {
        Self {
            rank,
            world_size,
            local_rank: rank,
        }
    }

    /// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (absent → 0, 1, 0). A world size above 1 is an
    /// error until multi-process training lands, rather than silently training alone.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`LocalEnv::from_env`], reading variables through `get` (for tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let read = |name: &str, default: usize| -> Result<usize> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    Error::config(
                        name,
                        &v,
                        "must be a non-negative integer (torchrun sets it)",
                    )
                }),
            }
        };
        let env = Self {
            rank: read("RANK", 0)?,
            world_size: read("WORLD_SIZE", 1)?,
            local_rank: read("LOCAL_RANK", 0)?,
        };
        if env.world_size != 1 {
            return Err(Error::config(
                "WORLD_SIZE",
                env.world_size,
                "titan trains in a single process for now; unset WORLD_SIZE or set it to 1",
            ));
        }
        if env.rank >= env.world_size {
            return Err(Error::config(
                "RANK",
                env.rank,
                format!("must be below WORLD_SIZE = {}", env.world_size),
            ));
        }
        Ok(env)
    }
}

impl DistributedEnvironment for LocalEnv {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world_size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_to_one_process() -> Result<()> {
        let env = LocalEnv::from_vars(vars(&[]))?;
        assert_eq!((env.rank(), env.world_size(), env.local_rank()), (0, 1, 0));
        Ok(())
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = LocalEnv::from_vars(vars(&[("RANK", "x")])).expect_err("bad rank");
        assert!(err.to_string().contains("`RANK` = x"), "{err}");
        let err = LocalEnv::from_vars(vars(&[("WORLD_SIZE", "4")])).expect_err("multi");
        assert!(err.to_string().contains("WORLD_SIZE"), "{err}");
    }
}
