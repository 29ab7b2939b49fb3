//! torch's c10d (`csrc/c10d.cpp`): a `TCPStore` for the rendezvous and a process group on it,
//! Gloo for CPU tensors and NCCL for CUDA ones, with the collectives titan uses.
#![allow(unsafe_code)] // Calls into the C++ shim; each call states why it is sound.

use std::ffi::{CString, c_char, c_void};
use std::time::Duration;

use tch::Tensor;

use super::{call, handles};
use crate::{Error, Result};

unsafe extern "C" {
    fn titan_has_nccl() -> bool;
    fn titan_store_new(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world_size: i32,
        timeout_ms: i64,
        prefix: *const c_char,
        port_out: *mut u16,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn titan_store_free(store: *mut c_void);
    fn titan_store_set(
        store: *mut c_void,
        key: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_store_get(
        store: *mut c_void,
        key: *const c_char,
        out: *mut *mut u8,
        len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_store_check(
        store: *mut c_void,
        key: *const c_char,
        present: *mut bool,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_store_delete(
        store: *mut c_void,
        key: *const c_char,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_bytes_free(bytes: *mut u8);
    fn titan_group_new(
        store: *mut c_void,
        rank: i32,
        size: i32,
        device_type: i8,
        timeout_ms: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn titan_group_free(group: *mut c_void, abort: bool);
    fn titan_group_all_reduce(
        group: *mut c_void,
        tensors: *const *const c_void,
        n: usize,
        op: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_group_broadcast(
        group: *mut c_void,
        tensors: *const *const c_void,
        n: usize,
        root: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_group_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
    fn titan_ddp_new(
        group: *mut c_void,
        params: *const *const c_void,
        bucket_of: *const u64,
        n: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn titan_ddp_free(ddp: *mut c_void);
    fn titan_ddp_arm(ddp: *mut c_void, err: *mut c_char, err_len: usize) -> i32;
    fn titan_ddp_order(
        ddp: *mut c_void,
        out: *mut u64,
        cap: usize,
        len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn titan_ddp_overlaps(ddp: *mut c_void) -> bool;
    fn titan_ddp_refired(ddp: *mut c_void) -> i64;
    fn titan_ddp_capturable(ddp: *mut c_void) -> bool;
    fn titan_ddp_finish(
        ddp: *mut c_void,
        stats: *const c_void,
        launched: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// Whether this build of titan has NCCL's process group (it found NCCL's and CCCL's headers).
pub fn has_nccl() -> bool {
    // SAFETY: no arguments; returns a constant.
    unsafe { titan_has_nccl() }
}

fn millis(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)
}

fn c_string(what: &str, value: &str) -> Result<CString> {
    CString::new(value).map_err(|_| Error::config(what, value, "must not contain a NUL byte"))
}

/// A c10d `TCPStore`: a small key-value server on one rank that every rank connects to.
#[derive(Debug)]
pub struct Store {
    raw: *mut c_void,
    port: u16,
}

// SAFETY: c10d's TCPStore is used from many threads by torch itself (its clients lock their
// socket); the handle is an owned heap object freed once, in `Drop`.
unsafe impl Send for Store {}
// SAFETY: as above; every method takes `&self` and c10d serialises each call.
unsafe impl Sync for Store {}

impl Store {
    /// The store at `host:port`: served by this process when `serve` (port 0 picks a free
    /// port), else reached as a client, within `timeout`, which also bounds each wait on a key.
    pub fn new(
        host: &str,
        port: u16,
        serve: bool,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self> {
        Self::with_prefix(host, port, serve, world_size, timeout, "")
    }

    /// As [`Store::new`], every key under `prefix` (none when empty).
    pub fn with_prefix(
        host: &str,
        port: u16,
        serve: bool,
        world_size: usize,
        timeout: Duration,
        prefix: &str,
    ) -> Result<Self> {
        let c_host = c_string("MASTER_ADDR", host)?;
        let c_prefix = c_string("store prefix", prefix)?;
        let world = i32::try_from(world_size)
            .map_err(|_| Error::config("WORLD_SIZE", world_size, "is too large"))?;
        let mut raw = std::ptr::null_mut();
        let mut bound = 0u16;
        call(&format!("the c10d store at {host}:{port}"), |err, len| {
            // SAFETY: `c_host` and `c_prefix` outlive the call; `bound` is a valid place for
            // the port.
            raw = unsafe {
                titan_store_new(
                    c_host.as_ptr(),
                    port,
                    serve,
                    world,
                    millis(timeout),
                    c_prefix.as_ptr(),
                    &mut bound,
                    err,
                    len,
                )
            };
            i32::from(raw.is_null())
        })?;
        Ok(Self { raw, port: bound })
    }

    /// The port the store is on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let c_key = c_string("store key", key)?;
        call(&format!("setting `{key}` in the c10d store"), |err, len| {
            // SAFETY: the store is live; key and value outlive the call, which copies them.
            unsafe {
                titan_store_set(
                    self.raw,
                    c_key.as_ptr(),
                    value.as_ptr(),
                    value.len(),
                    err,
                    len,
                )
            }
        })
    }

    /// The value of `key`, waiting for it within the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let c_key = c_string("store key", key)?;
        let (mut out, mut n) = (std::ptr::null_mut::<u8>(), 0usize);
        call(
            &format!("reading `{key}` from the c10d store"),
            |err, len| {
                // SAFETY: the store is live; `out` and `n` are valid places for the result.
                unsafe { titan_store_get(self.raw, c_key.as_ptr(), &mut out, &mut n, err, len) }
            },
        )?;
        // SAFETY: on success the shim stored a malloc'ed buffer of `n` bytes in `out`, which
        // is copied here and then freed once.
        let value = unsafe { std::slice::from_raw_parts(out, n) }.to_vec();
        // SAFETY: `out` came from the shim's malloc and is freed once.
        unsafe { titan_bytes_free(out) };
        Ok(value)
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) -> Result<()> {
        let c_key = c_string("store key", key)?;
        call(
            &format!("deleting `{key}` from the c10d store"),
            |err, len| {
                // SAFETY: the store is live; the key outlives the call.
                unsafe { titan_store_delete(self.raw, c_key.as_ptr(), err, len) }
            },
        )
    }

    /// Whether `key` is set now.
    pub fn check(&self, key: &str) -> Result<bool> {
        let c_key = c_string("store key", key)?;
        let mut present = false;
        call(
            &format!("looking up `{key}` in the c10d store"),
            |err, len| {
                // SAFETY: the store is live; `present` is a valid place for the answer.
                unsafe { titan_store_check(self.raw, c_key.as_ptr(), &mut present, err, len) }
            },
        )?;
        Ok(present)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `titan_store_new` and is freed once; groups made on the store
        // hold their own reference to it.
        unsafe { titan_store_free(self.raw) }
    }
}

/// Which c10d backend a group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors.
    Gloo,
    /// `ProcessGroupNCCL`: CUDA tensors.
    Nccl,
}

/// A c10d process group over a [`Store`].
#[derive(Debug)]
pub struct Group {
    raw: *mut c_void,
    backend: Backend,
}

// SAFETY: c10d backends are driven from several threads by torch itself (DDP's reducer
// launches collectives from autograd threads); the handle is freed once, in `Drop`.
unsafe impl Send for Group {}
// SAFETY: as above; callers issue collectives in the same order on every rank, which c10d
// requires anyway.
unsafe impl Sync for Group {}

impl Group {
    /// Rank `rank` of `size` joins the group on `store`; returns once every rank joined, or
    /// fails after `timeout`, which also bounds every collective.
    pub fn new(
        store: &Store,
        rank: usize,
        size: usize,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self> {
        let to_i32 = |name: &str, v: usize| {
            i32::try_from(v).map_err(|_| Error::config(name, v, "is too large"))
        };
        let (r, n) = (to_i32("RANK", rank)?, to_i32("WORLD_SIZE", size)?);
        let device_type = match backend {
            Backend::Gloo => 0,
            Backend::Nccl => 1,
        };
        let mut raw = std::ptr::null_mut();
        call(
            &format!("rank {rank} of {size} joining the {backend:?} process group"),
            |err, len| {
                // SAFETY: the store is live for the call; the group keeps its own reference.
                raw = unsafe {
                    titan_group_new(store.raw, r, n, device_type, millis(timeout), err, len)
                };
                i32::from(raw.is_null())
            },
        )?;
        Ok(Self { raw, backend })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sums each tensor over every rank, in place (all queued, then all waited for).
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<()> {
        self.all_reduce(tensors, 0, "all-reduce (sum)")
    }

    /// Takes each tensor's element-wise maximum over every rank, in place.
    pub fn all_reduce_max(&self, tensors: &[Tensor]) -> Result<()> {
        self.all_reduce(tensors, 1, "all-reduce (max)")
    }

    fn all_reduce(&self, tensors: &[Tensor], op: i32, what: &str) -> Result<()> {
        let ptrs = handles(tensors);
        call(what, |err, len| {
            // SAFETY: every pointer is a live `at::Tensor*` (tch's `C_tensor`) for the call.
            unsafe { titan_group_all_reduce(self.raw, ptrs.as_ptr(), ptrs.len(), op, err, len) }
        })
    }

    /// Copies rank `root`'s values of each tensor into every rank's, in place.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let root = i32::try_from(root).map_err(|_| Error::config("root", root, "is too large"))?;
        let ptrs = handles(tensors);
        call("broadcast", |err, len| {
            // SAFETY: every pointer is a live `at::Tensor*` for the call.
            unsafe { titan_group_broadcast(self.raw, ptrs.as_ptr(), ptrs.len(), root, err, len) }
        })
    }

    /// Returns once every rank reached the barrier.
    pub fn barrier(&self) -> Result<()> {
        call("barrier", |err, len| {
            // SAFETY: the group is live.
            unsafe { titan_group_barrier(self.raw, err, len) }
        })
    }
}

/// Gradient buckets reduced over a [`Group`] while backward runs: a hook on each parameter's
/// gradient accumulator fills its bucket, and each full bucket is all-reduced at once,
/// asynchronously and in bucket order (what DDP's reducer does).
#[derive(Debug)]
pub struct GradBuckets {
    raw: *mut c_void,
}

// SAFETY: the C++ state is guarded by its own mutex (hooks may run on autograd's threads); the
// handle is freed once, in `Drop`.
unsafe impl Send for GradBuckets {}

impl GradBuckets {
    /// Buckets of `params` (leaf tensors that require gradients) over `group`: parameter `i`
    /// goes to bucket `bucket_of[i]`, buckets numbered in the order backward fills them.
    pub fn new(group: &Group, params: &[Tensor], bucket_of: &[u64]) -> Result<Self> {
        if params.len() != bucket_of.len() {
            return Err(Error::Training(format!(
                "{} parameters but {} bucket numbers",
                params.len(),
                bucket_of.len()
            )));
        }
        let ptrs = handles(params);
        let mut raw = std::ptr::null_mut();
        call("gradient buckets", |err, len| {
            // SAFETY: every pointer is a live `at::Tensor*`; the shim keeps its own references.
            raw = unsafe {
                titan_ddp_new(
                    group.raw,
                    ptrs.as_ptr(),
                    bucket_of.as_ptr(),
                    ptrs.len(),
                    err,
                    len,
                )
            };
            i32::from(raw.is_null())
        })?;
        Ok(Self { raw })
    }

    /// The next backward pass reduces the buckets as it fills them.
    pub fn arm(&self) -> Result<()> {
        call("arming the gradient buckets", |err, len| {
            // SAFETY: the handle is live.
            unsafe { titan_ddp_arm(self.raw, err, len) }
        })
    }

    /// The parameters (indices) in the order they became ready in the last armed backward;
    /// those that never did are left out.
    pub fn order(&self, params: usize) -> Result<Vec<u64>> {
        let mut out = vec![0u64; params];
        let mut len = 0usize;
        call("the gradients' order", |err, len_err| {
            // SAFETY: `out` has room for `params` entries, which is the cap passed.
            unsafe { titan_ddp_order(self.raw, out.as_mut_ptr(), params, &mut len, err, len_err) }
        })?;
        out.truncate(len.min(params));
        Ok(out)
    }

    /// The first parameter (index) whose gradient arrived twice in the last armed backward on
    /// this rank, if one did (still known after a [`GradBuckets::finish`] that refused it).
    pub fn refired(&self) -> Option<usize> {
        // SAFETY: the handle is live.
        usize::try_from(unsafe { titan_ddp_refired(self.raw) }).ok()
    }

    /// Whether backward still queues buckets (false on every rank once a parameter's gradient
    /// arrived twice in one backward on any rank: then every bucket is reduced after it).
    pub fn overlaps(&self) -> bool {
        // SAFETY: the handle is live.
        unsafe { titan_ddp_overlaps(self.raw) }
    }

    /// Whether [`GradBuckets::finish`] reads nothing on the host, so a CUDA graph can hold it:
    /// false while some parameter has had no gradient on any rank.
    pub fn capturable(&self) -> bool {
        // SAFETY: the handle is live.
        unsafe { titan_ddp_capturable(self.raw) }
    }

    /// Reduces what backward did not reach and `stats` (summed over the ranks too), waits for
    /// all and writes the sums into the gradients; returns how many buckets backward queued.
    pub fn finish(&self, stats: &Tensor) -> Result<usize> {
        let mut launched = 0usize;
        call("the gradient all-reduce", |err, len| {
            // SAFETY: the handle and `stats` (an `at::Tensor*`) are live for the call.
            unsafe { titan_ddp_finish(self.raw, stats.as_ptr().cast(), &mut launched, err, len) }
        })?;
        Ok(launched)
    }
}

impl Drop for GradBuckets {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `titan_ddp_new` and is freed once; its hooks are removed.
        unsafe { titan_ddp_free(self.raw) }
    }
}

impl Group {
    /// Leaves the group after a failure: its backend is aborted rather than shut down, so work
    /// a peer will never match is not waited for.
    pub fn abort(self) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: `raw` came from `titan_group_new`; `forget` keeps `Drop` from freeing it again.
        unsafe { titan_group_free(raw, true) }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `titan_group_new` and is freed once.
        unsafe { titan_group_free(self.raw, false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ranks, as two threads of this process over loopback: what the Gloo declarations in
    /// `csrc/gloo_names` must get right for libtorch's ProcessGroupGloo to work at all.
    #[test]
    fn two_gloo_ranks_sum_broadcast_and_meet() -> Result<()> {
        let timeout = Duration::from_secs(30);
        let server = Store::new("127.0.0.1", 0, true, 2, timeout)?;
        let port = server.port();
        assert_ne!(port, 0);
        let peer = std::thread::spawn(move || -> Result<(Vec<f32>, Vec<f32>, Vec<u8>)> {
            let store = Store::new("127.0.0.1", port, false, 2, timeout)?;
            let group = Group::new(&store, 1, 2, Backend::Gloo, timeout)?;
            let t = Tensor::from_slice(&[10f32, 20., 30.]);
            group.all_reduce_sum(&[t.shallow_clone()])?;
            let b = Tensor::from_slice(&[0f32, 0.]);
            group.broadcast(&[b.shallow_clone()], 0)?;
            group.barrier()?;
            Ok((
                Vec::<f32>::try_from(&t)?,
                Vec::<f32>::try_from(&b)?,
                store.get("from-rank-0")?,
            ))
        });
        let group = Group::new(&server, 0, 2, Backend::Gloo, timeout)?;
        let a = Tensor::from_slice(&[1f32, 2., 3.]);
        group.all_reduce_sum(&[a.shallow_clone()])?;
        server.set("from-rank-0", b"hello")?;
        let b = Tensor::from_slice(&[7f32, 8.]);
        group.broadcast(&[b.shallow_clone()], 0)?;
        group.barrier()?;
        let (t1, b1, got) = peer.join().expect("rank 1 panicked")?;
        assert_eq!(Vec::<f32>::try_from(&a)?, vec![11., 22., 33.]);
        assert_eq!(t1, vec![11., 22., 33.]);
        assert_eq!(b1, vec![7., 8.]);
        assert_eq!(got, b"hello");
        assert!(server.check("from-rank-0")? && !server.check("absent")?);
        Ok(())
    }

    /// A rank whose peer never arrives fails within the timeout, naming what it waited for.
    #[test]
    fn a_missing_peer_is_an_error_within_the_timeout() -> Result<()> {
        let timeout = Duration::from_millis(1500);
        let server = Store::new("127.0.0.1", 0, true, 2, timeout)?;
        let started = std::time::Instant::now();
        let err = Group::new(&server, 0, 2, Backend::Gloo, timeout).expect_err("no peer");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("rank 0 of 2 joining"), "{err}");
        Ok(())
    }
}
