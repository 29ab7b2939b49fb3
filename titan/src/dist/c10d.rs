//! torch's process group for titan's ranks: [`ProcessGroup`] (the store and the c10d backend,
//! with errors that name the rank that failed) and [`C10dEnv`], the distributed environment
//! that joins it from torchrun's variables, once per process.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use super::{DistributedEnvironment, Torchrun};
use crate::parallel_dims::ParallelConfig;
use crate::shim::c10d::{Backend, GradBuckets, Group, Store, has_nccl};
use crate::{Error, Result};

/// The process's group, once joined; [`shutdown`] leaves it.
static CURRENT: Mutex<Option<Arc<ProcessGroup>>> = Mutex::new(None);

fn current_slot() -> MutexGuard<'static, Option<Arc<ProcessGroup>>> {
    CURRENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The process group this process joined, if any.
pub fn current() -> Option<Arc<ProcessGroup>> {
    current_slot().clone()
}

/// Leaves the process group (a binary's last step). After an `error` of this rank's own, first
/// tells the other ranks it stopped and why, so their errors name it, and closes the group (the
/// others' collectives fail now); where this process serves the store, it keeps the store up
/// until each other rank has read the failure, or a few seconds passed. An error that only
/// reports another rank's ([`Error::PeerStopped`]) is not reported again.
pub fn shutdown(error: Option<&Error>) {
    let Some(group) = current_slot().take() else {
        return;
    };
    let Some(error) = error else {
        return;
    };
    if !matches!(error, Error::PeerStopped(_)) {
        group.report_failure(&error.to_string());
    }
    group.close();
    // The store outlives this process's part: the other ranks still read who failed in it.
    if group.serves_store {
        group.await_readers(Duration::from_secs(5));
    }
}

const FAILED: &str = "titan/failed";
const SEEN: &str = "titan/seen";

/// torch's c10d process group over a TCPStore: every rank calls the same collectives in the
/// same order. A collective that fails says which rank stopped, when that rank said so.
#[derive(Debug)]
pub struct ProcessGroup {
    store: Store,
    group: Mutex<Option<Group>>,
    backend: Backend,
    rank: usize,
    size: usize,
    timeout: Duration,
    /// Whether this process serves the store (rank 0, unless torchrun's agent does).
    serves_store: bool,
    /// Calls of [`ProcessGroup::rank_zero_first`] so far: every rank makes them in the same
    /// order, so the n-th call pairs with the n-th on every rank.
    firsts: std::sync::atomic::AtomicU64,
}

/// Before the group forms, every rank checks that it agrees with rank 0 on the world size and
/// the backend (NCCL's group forms lazily, so a rank that saw no GPU and chose Gloo, or one
/// started with another `WORLD_SIZE`, would otherwise hang at the first collective): a rank
/// that differs stops with an error naming both. One key, read once per rank.
fn agree_with_rank_zero(store: &Store, rank: usize, size: usize, backend: Backend) -> Result<()> {
    let ours = format!("WORLD_SIZE = {size}, backend {backend:?}");
    if rank == 0 {
        return store.set("titan/world", ours.as_bytes());
    }
    let theirs = store.get("titan/world").map_err(|e| {
        Error::Distributed(format!(
            "rank {rank} of {size}: rank 0 did not say how it joins within the timeout (is it \
             started, at MASTER_ADDR/MASTER_PORT?): {e}"
        ))
    })?;
    let theirs = String::from_utf8_lossy(&theirs);
    if theirs != ours {
        return Err(Error::Distributed(format!(
            "rank {rank} joins with {ours}, but rank 0 with {theirs}: every rank needs the same \
             WORLD_SIZE and device kind (a rank that sees no GPU takes Gloo where the others take \
             NCCL; check CUDA_VISIBLE_DEVICES and training.device)"
        )));
    }
    Ok(())
}

impl ProcessGroup {
    /// Rank `rank` of `size` joins: rank 0 serves the store at `host:port`, the others connect
    /// to it; returns once every rank joined, or an error after `timeout`, which bounds every
    /// collective too.
    pub fn join(
        host: &str,
        port: u16,
        rank: usize,
        size: usize,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self> {
        Self::join_store(host, port, rank, size, backend, timeout, rank == 0, "")
    }

    /// The rank torchrun's variables describe joins: on torchrun's agent store (every rank a
    /// client, keys under the restart's prefix) where torchrun says so, else on rank 0's.
    pub fn join_torchrun(t: &Torchrun, backend: Backend, timeout: Duration) -> Result<Self> {
        let serve = t.rank == 0 && !t.agent_store;
        let prefix = t.store_prefix();
        let (host, port) = (&t.master_addr, t.master_port);
        Self::join_store(
            host,
            port,
            t.rank,
            t.world_size,
            backend,
            timeout,
            serve,
            &prefix,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn join_store(
        host: &str,
        port: u16,
        rank: usize,
        size: usize,
        backend: Backend,
        timeout: Duration,
        serve: bool,
        prefix: &str,
    ) -> Result<Self> {
        let store = Store::with_prefix(host, port, serve, size, timeout, prefix).map_err(|e| {
            Error::Distributed(format!(
                "rank {rank} of {size} could not reach the rendezvous store at {host}:{port} \
                 (MASTER_ADDR, MASTER_PORT) within {}s: {e}",
                timeout.as_secs()
            ))
        })?;
        agree_with_rank_zero(&store, rank, size, backend)?;
        let group = Group::new(&store, rank, size, backend, timeout).map_err(|e| {
            Error::Distributed(format!(
                "rank {rank} of {size}: not every rank joined the {backend:?} process group \
                 within {}s (is every rank started, with the same WORLD_SIZE, and does every \
                 rank see the same output directory? a rank that finds the run complete does \
                 not join): {e}",
                timeout.as_secs()
            ))
        })?;
        Ok(Self {
            store,
            group: Mutex::new(Some(group)),
            backend,
            rank,
            size,
            timeout,
            serves_store: serve,
            firsts: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The c10d backend (Gloo or NCCL).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How long a rank waits for the others.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn with_group<T>(&self, what: &str, f: impl FnOnce(&Group) -> Result<T>) -> Result<T> {
        let slot = self.group.lock().unwrap_or_else(|p| p.into_inner());
        let Some(group) = slot.as_ref() else {
            return Err(Error::Distributed(format!(
                "rank {}: {what} after the process group was closed",
                self.rank
            )));
        };
        f(group).map_err(|e| self.explain(what, e))
    }

    /// Sums each tensor over every rank, in place.
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        self.with_group("an all-reduce", |g| g.all_reduce_sum(tensors))
    }

    /// Takes each tensor's element-wise maximum over every rank, in place.
    pub fn all_reduce_max(&self, tensors: &[Tensor]) -> Result<()> {
        self.with_group("an all-reduce", |g| g.all_reduce_max(tensors))
    }

    /// `values` summed over every rank (one small tensor on `device`, the backend's device).
    pub fn sum_values(&self, values: &[f64], device: Device) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values).f_to_device(device)?;
        self.all_reduce_sum(std::slice::from_ref(&t))?;
        Ok(Vec::<f64>::try_from(&t.f_to_device(Device::Cpu)?)?)
    }

    /// `values`' element-wise maximum over every rank (as [`ProcessGroup::sum_values`]).
    pub fn max_values(&self, values: &[f64], device: Device) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values).f_to_device(device)?;
        self.all_reduce_max(std::slice::from_ref(&t))?;
        Ok(Vec::<f64>::try_from(&t.f_to_device(Device::Cpu)?)?)
    }

    /// Copies rank `root`'s values of each tensor into every rank's.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        self.with_group("a broadcast", |g| g.broadcast(tensors, root))
    }

    /// Returns once every rank reached it.
    pub fn barrier(&self) -> Result<()> {
        self.with_group("a barrier", Group::barrier)
    }

    /// Gradient buckets of `params` over this group (see [`GradBuckets`]).
    pub(crate) fn grad_buckets(&self, params: &[Tensor], bucket_of: &[u64]) -> Result<GradBuckets> {
        self.with_group("hooking the gradient buckets", |g| {
            GradBuckets::new(g, params, bucket_of)
        })
    }

    /// `result`, whose error (from `what`) names the rank that stopped where one said so.
    pub(crate) fn explained<T>(&self, what: &str, result: Result<T>) -> Result<T> {
        result.map_err(|e| self.explain(what, e))
    }

    /// Every rank's `value` under `tag` (unique per call), in rank order, on rank 0; `None` on
    /// the others. Through the store: for small values (a dataloader's position).
    pub fn gather_json(
        &self,
        tag: &str,
        value: &serde_json::Value,
    ) -> Result<Option<Vec<serde_json::Value>>> {
        let key = |rank: usize| format!("titan/gather/{tag}/{rank}");
        self.store
            .set(&key(self.rank), &serde_json::to_vec(value)?)
            .map_err(|e| self.explain("a gather", e))?;
        if self.rank != 0 {
            return Ok(None);
        }
        (0..self.size)
            .map(|rank| {
                let what = format!("gathering `{tag}` from rank {rank}");
                let bytes = self
                    .store
                    .get(&key(rank))
                    .map_err(|e| self.explain(&what, e))?;
                // Read once: the store keeps no copy (a position may hold megabytes of text).
                self.store
                    .delete(&key(rank))
                    .map_err(|e| self.explain(&what, e))?;
                Ok(serde_json::from_slice(&bytes)?)
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Runs `f` on rank 0, then on every other rank once rank 0 has finished it (they wait on
    /// the store, however long rank 0 takes, and stop with rank 0's error if it fails). Every
    /// rank makes these calls in the same order (the n-th pairs with the n-th); `tag` names the
    /// step in messages. `f` learns whether it runs on rank 0.
    pub fn rank_zero_first<T>(&self, tag: &str, f: impl FnOnce(bool) -> Result<T>) -> Result<T> {
        let n = self
            .firsts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let done = format!("titan/done/{n}");
        if self.rank == 0 {
            let out = f(true)?;
            self.store
                .set(&done, b"1")
                .map_err(|e| self.explain(&format!("saying `{tag}` is done"), e))?;
            return Ok(out);
        }
        let what = format!("waiting for rank 0's `{tag}`");
        loop {
            if self
                .store
                .check(&done)
                .map_err(|e| self.explain(&what, e))?
            {
                break;
            }
            if self.store.check(&format!("{FAILED}/0")).unwrap_or(false) {
                return Err(self.explain(&what, Error::Distributed("rank 0 stopped".into())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        f(false)
    }

    /// Tells the other ranks this one stopped with `message` (best effort: the store may be
    /// gone with rank 0).
    pub fn report_failure(&self, message: &str) {
        let _ = self
            .store
            .set(&format!("{FAILED}/{}", self.rank), message.as_bytes());
    }

    /// Leaves the c10d group after a failure (aborted: its connections close, nothing is
    /// waited for), keeping the store.
    fn close(&self) {
        let group = self.group.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(group) = group {
            group.abort();
        }
    }

    /// Waits until every other rank has read a failure or failed itself (or `limit` passed).
    fn await_readers(&self, limit: Duration) {
        let started = Instant::now();
        let done = |r: usize, key: &str| self.store.check(&format!("{key}/{r}")).unwrap_or(true);
        let all_seen = || {
            (0..self.size)
                .filter(|r| *r != self.rank)
                .all(|r| done(r, SEEN) || done(r, FAILED))
        };
        while started.elapsed() < limit && !all_seen() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `error`, from `what` on this rank, with the rank that stopped where one said so.
    fn explain(&self, what: &str, error: Error) -> Error {
        let me = self.rank;
        let mut store_gone = false;
        for rank in (0..self.size).filter(|r| *r != me) {
            let key = format!("{FAILED}/{rank}");
            match self.store.check(&key) {
                Ok(true) => {
                    let message = self.store.get(&key).unwrap_or_default();
                    let _ = self.store.set(&format!("{SEEN}/{me}"), b"1");
                    return Error::PeerStopped(format!(
                        "rank {rank} stopped with an error: {}\n({what} failed on rank {me}: \
                         {error})",
                        String::from_utf8_lossy(&message)
                    ));
                }
                Ok(false) => {}
                Err(_) => {
                    store_gone = true;
                    break;
                }
            }
        }
        if store_gone && !self.serves_store {
            return Error::PeerStopped(format!(
                "the rendezvous store is gone (rank 0 or torchrun's agent, which serves it, \
                 stopped), so {what} failed on rank {me}: {error}"
            ));
        }
        // Gloo's words for a peer whose process ended (killed, or exited without a word).
        let text = error.to_string();
        if [
            "Connection reset by peer",
            "Connection closed by peer",
            "Broken pipe",
        ]
        .iter()
        .any(|words| text.contains(words))
        {
            return Error::PeerStopped(format!(
                "another rank stopped without saying why (its connection closed; its own output \
                 or its launcher tells more), so {what} failed on rank {me}: {error}"
            ));
        }
        Error::Distributed(format!(
            "{what} failed on rank {me}: {error}; another rank stopped or hangs (a rank waits \
             for the others at most parallelism.timeout_s = {} s), and its own output says why",
            self.timeout.as_secs()
        ))
    }
}

/// The distributed environment of a run launched by torchrun (or `--nproc-per-node`): its
/// rank, world and local rank from torchrun's variables, and torch's process group (Gloo on
/// CPU, NCCL on CUDA), joined once per process. Without torchrun's variables, one process and
/// no group.
#[derive(Debug, Clone)]
pub struct C10dEnv {
    rank: usize,
    world_size: usize,
    local_rank: usize,
    group: Option<Arc<ProcessGroup>>,
}

impl C10dEnv {
    /// Joins the process group torchrun's variables describe, for tensors on `device`, waiting
    /// `parallelism.timeout_s` for the other ranks; a second call in the same process reuses
    /// the group.
    pub fn from_env(device: Device, parallelism: &ParallelConfig) -> Result<Self> {
        Self::join(Torchrun::from_env()?, device, parallelism.timeout()?)
    }

    /// As [`C10dEnv::from_env`], from given variables (`None`: one process).
    pub fn join(torchrun: Option<Torchrun>, device: Device, timeout: Duration) -> Result<Self> {
        let Some(t) = torchrun else {
            return Ok(Self {
                rank: 0,
                world_size: 1,
                local_rank: 0,
                group: None,
            });
        };
        let backend = match device {
            Device::Cpu => Backend::Gloo,
            Device::Cuda(_) if has_nccl() => {
                // The rank's own GPU is current before NCCL's group forms (NCCL guesses its
                // device from the current one), as torchtitan's `set_device(local_rank)`.
                let gpus = tch::Cuda::device_count().max(0) as usize;
                if t.local_rank < gpus {
                    crate::shim::make_current(Device::Cuda(t.local_rank))?;
                }
                Backend::Nccl
            }
            Device::Cuda(_) => {
                return Err(Error::Unsupported(
                    "this titan was built without NCCL's headers (titan/build.rs looks for \
                     nvidia/nccl and CCCL's nv/target, which .cargo/libtorch.sh installs), so \
                     it cannot reduce CUDA tensors across ranks"
                        .into(),
                ));
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "titan's process groups reduce CPU (Gloo) and CUDA (NCCL) tensors, not \
                     {other:?}"
                )));
            }
        };
        let mut slot = current_slot();
        let group = match slot.as_ref() {
            Some(group) if group.rank == t.rank && group.size == t.world_size => {
                if group.backend != backend {
                    return Err(Error::Distributed(format!(
                        "this process already joined a {:?} process group; one for {backend:?} \
                         was asked for",
                        group.backend
                    )));
                }
                Arc::clone(group)
            }
            Some(group) => {
                return Err(Error::Distributed(format!(
                    "this process already joined a process group as rank {} of {}, not rank {} \
                     of {}",
                    group.rank, group.size, t.rank, t.world_size
                )));
            }
            None => {
                let group = Arc::new(ProcessGroup::join_torchrun(&t, backend, timeout)?);
                *slot = Some(Arc::clone(&group));
                group
            }
        };
        Ok(Self {
            rank: t.rank,
            world_size: t.world_size,
            local_rank: t.local_rank,
            group: Some(group),
        })
    }
}

impl DistributedEnvironment for C10dEnv {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world_size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn process_group(&self) -> Option<Arc<ProcessGroup>> {
        self.group.clone()
    }
}
