//! torchrun's environment contract: the variables it (and `--nproc-per-node`) sets for each
//! rank.

use crate::{Error, Result};

/// One rank's torchrun variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torchrun {
    /// `RANK`: the global rank.
    pub rank: usize,
    /// `WORLD_SIZE`: the number of ranks.
    pub world_size: usize,
    /// `LOCAL_RANK`: the rank on this machine (selects the GPU).
    pub local_rank: usize,
    /// `LOCAL_WORLD_SIZE`: the ranks on this machine.
    pub local_world_size: usize,
    /// `MASTER_ADDR`: the host of rank 0's store.
    pub master_addr: String,
    /// `MASTER_PORT`: its port.
    pub master_port: u16,
    /// `TORCHELASTIC_RESTART_COUNT`: how often torchrun restarted the ranks (0 without it).
    pub restarts: u64,
    /// `TORCHELASTIC_USE_AGENT_STORE`: torchrun's agent serves the store on `MASTER_PORT`, and
    /// every rank is its client, with keys under `/worker/attempt_{restarts}`.
    pub agent_store: bool,
}

impl Torchrun {
    /// The prefix of every store key: torchrun's, per restart, on its agent's store.
    pub fn store_prefix(&self) -> String {
        if self.agent_store {
            format!("/worker/attempt_{}", self.restarts)
        } else {
            String::new()
        }
    }
}

impl Torchrun {
    /// The variables of this process; `None` when `WORLD_SIZE` is unset (no launcher).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Torchrun::from_env`], reading variables through `get`. Every variable is checked:
    /// an error names it and its value. A rank other than 0 without `WORLD_SIZE` is an error
    /// (each such process would take itself for the only one, and write the outputs).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = get("WORLD_SIZE") else {
            for name in ["RANK", "LOCAL_RANK"] {
                if let Some(v) = get(name).filter(|v| v.trim() != "0") {
                    return Err(Error::config(
                        name,
                        v,
                        "is set without WORLD_SIZE: set WORLD_SIZE too (torchrun sets both), or \
                         unset it to train in one process",
                    ));
                }
            }
            return Ok(None);
        };
        let number = |name: &str, value: Option<String>, default: Option<u64>| -> Result<u64> {
            match value {
                None => default.ok_or_else(|| {
                    Error::config(
                        name,
                        "(unset)",
                        "torchrun sets it beside WORLD_SIZE; set it too",
                    )
                }),
                Some(v) => v.trim().parse().map_err(|_| {
                    Error::config(
                        name,
                        &v,
                        "must be a non-negative integer (torchrun sets it)",
                    )
                }),
            }
        };
        let world_size = number("WORLD_SIZE", Some(world), None)? as usize;
        let rank = number("RANK", get("RANK"), None)? as usize;
        let local_rank = number("LOCAL_RANK", get("LOCAL_RANK"), Some(rank as u64))? as usize;
        let local_world_size = number(
            "LOCAL_WORLD_SIZE",
            get("LOCAL_WORLD_SIZE"),
            Some(world_size as u64),
        )? as usize;
        if world_size == 0 {
            return Err(Error::config("WORLD_SIZE", 0, "must be at least 1"));
        }
        if local_world_size == 0 {
            return Err(Error::config("LOCAL_WORLD_SIZE", 0, "must be at least 1"));
        }
        if rank >= world_size {
            return Err(Error::config(
                "RANK",
                rank,
                format!("must be below WORLD_SIZE = {world_size}"),
            ));
        }
        if local_rank >= local_world_size {
            return Err(Error::config(
                "LOCAL_RANK",
                local_rank,
                format!("must be below LOCAL_WORLD_SIZE = {local_world_size}"),
            ));
        }
        // One machine's ranks may default to this one; several machines need rank 0's named.
        let master_addr = match get("MASTER_ADDR") {
            Some(addr) => addr,
            None if world_size > local_world_size => {
                return Err(Error::config(
                    "MASTER_ADDR",
                    "(unset)",
                    format!(
                        "must name rank 0's host: the run spans several machines (WORLD_SIZE = \
                         {world_size}, LOCAL_WORLD_SIZE = {local_world_size})"
                    ),
                ));
            }
            None => "127.0.0.1".into(),
        };
        if master_addr.trim().is_empty() {
            return Err(Error::config(
                "MASTER_ADDR",
                "(empty)",
                "must name rank 0's host",
            ));
        }
        let port = number("MASTER_PORT", get("MASTER_PORT"), Some(29500))?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::config("MASTER_PORT", port, "must be a port, 1 to 65535"))?;
        let restarts = number(
            "TORCHELASTIC_RESTART_COUNT",
            get("TORCHELASTIC_RESTART_COUNT"),
            Some(0),
        )?;
        let agent_store = match get("TORCHELASTIC_USE_AGENT_STORE") {
            None => false,
            Some(v) => match v.trim() {
                "True" | "true" | "1" => true,
                "False" | "false" | "0" | "" => false,
                other => {
                    return Err(Error::config(
                        "TORCHELASTIC_USE_AGENT_STORE",
                        other,
                        "must be True or False (torchrun sets it)",
                    ));
                }
            },
        };
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            restarts,
            agent_store,
        }))
    }
}

/// This process's rank as torchrun set it (`RANK`; 0 without a launcher), for what must be
/// decided before the distributed environment is built (who locks the output directory).
pub fn launch_rank() -> Result<usize> {
    Ok(Torchrun::from_env()?.map_or(0, |t| t.rank))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dist::vars;

    #[test]
    fn no_world_size_is_no_launcher() -> Result<()> {
        assert_eq!(Torchrun::from_vars(vars(&[]))?, None);
        assert_eq!(Torchrun::from_vars(vars(&[("RANK", "0")]))?, None);
        Ok(())
    }

    #[test]
    fn torchruns_variables_are_read_and_defaulted() -> Result<()> {
        let t = Torchrun::from_vars(vars(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29600"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ]))?
        .expect("launched");
        assert_eq!(t.store_prefix(), "/worker/attempt_2");
        assert_eq!(
            (t.rank, t.world_size, t.local_rank, t.local_world_size),
            (3, 4, 1, 2)
        );
        assert_eq!(
            (t.master_addr.as_str(), t.master_port, t.restarts),
            ("node0", 29600, 2)
        );
        let t = Torchrun::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "1")]))?.expect("set");
        assert_eq!(
            (t.local_rank, t.master_addr.as_str(), t.master_port),
            (1, "127.0.0.1", 29500)
        );
        assert_eq!(t.store_prefix(), "");
        Ok(())
    }

    #[test]
    fn bad_variables_are_named_with_their_values() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("WORLD_SIZE", "two"), ("RANK", "0")],
                "`WORLD_SIZE` = two",
            ),
            (&[("WORLD_SIZE", "2")], "`RANK` = (unset)"),
            (
                &[("WORLD_SIZE", "2"), ("RANK", "2")],
                "must be below WORLD_SIZE = 2",
            ),
            (
                &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")],
                "`MASTER_PORT` = 70000",
            ),
            (
                &[
                    ("WORLD_SIZE", "2"),
                    ("RANK", "0"),
                    ("LOCAL_RANK", "2"),
                    ("LOCAL_WORLD_SIZE", "2"),
                ],
                "`LOCAL_RANK` = 2",
            ),
            (&[("RANK", "3")], "`RANK` = 3"),
            (&[("LOCAL_RANK", "1")], "`LOCAL_RANK` = 1"),
            (
                &[
                    ("WORLD_SIZE", "4"),
                    ("RANK", "0"),
                    ("LOCAL_WORLD_SIZE", "2"),
                ],
                "several machines (WORLD_SIZE = 4, LOCAL_WORLD_SIZE = 2)",
            ),
        ];
        for (pairs, expected) in cases {
            let err = Torchrun::from_vars(vars(pairs)).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
    }
}
