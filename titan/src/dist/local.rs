//! The single-process environment: rank 0 of 1, with no process group.

use super::DistributedEnvironment;
use crate::{Error, Result};

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
    /// error, rather than N processes each training a model of its own: `C10dEnv` is the
    /// environment of several processes.
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
                "LocalEnv is one process; build the experiment's `dist` with \
                 `C10dEnv::from_env(..)` to train on several, or unset WORLD_SIZE",
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

    use crate::dist::vars;

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
