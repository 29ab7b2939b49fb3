//! Data parallelism's gradient reduction, overlapped with backward: each rank's gradients go
//! into buckets (DDP's sizes: 1 MiB first, then 25 MiB) that are all-reduced, summed, while
//! backward is still running; the step's loss and token sums ride along, so dividing by the
//! global count gives exactly the gradient of one batch of every rank's tokens.

use std::sync::Arc;

use tch::Tensor;

use super::ProcessGroup;
use crate::Result;
use crate::shim::c10d::GradBuckets;

/// The most bytes of gradients in the first bucket (DDP's `first_bucket_bytes_cap`): small, so
/// communication starts early in backward.
pub(crate) const FIRST_BUCKET_BYTES: i64 = 1 << 20;
/// The most bytes in every later bucket (DDP's `bucket_cap_mb`).
pub(crate) const BUCKET_BYTES: i64 = 25 << 20;

/// The bucket of each of `params`: last parameters first (the order backward produces their
/// gradients), at most `first` bytes in bucket 0 and `rest` in each other, one dtype and device
/// per bucket. A parameter larger than a bucket gets one of its own.
pub(crate) fn assign_buckets(params: &[Tensor], first: i64, rest: i64) -> Vec<u64> {
    let mut out = vec![0u64; params.len()];
    let (mut bucket, mut bytes, mut kind) = (0u64, 0i64, None);
    for (i, p) in params.iter().enumerate().rev() {
        let size = p.numel() as i64 * p.kind().elt_size_in_bytes() as i64;
        let cap = if bucket == 0 { first } else { rest };
        let same = kind == Some((p.kind(), p.device()));
        if kind.is_some() && (!same || bytes + size > cap) {
            bucket += 1;
            bytes = 0;
        }
        kind = Some((p.kind(), p.device()));
        bytes += size;
        out[i] = bucket;
    }
    out
}

/// The gradient reduction of a data-parallel run over `group`.
pub(crate) struct GradReducer {
    buckets: GradBuckets,
    count: usize,
    group: Arc<ProcessGroup>,
}

impl GradReducer {
    /// Hooks `params` (named, trainable) into buckets over `group`.
    pub(crate) fn new(group: Arc<ProcessGroup>, params: &[(String, Tensor)]) -> Result<Self> {
        let tensors: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
        let bucket_of = assign_buckets(&tensors, FIRST_BUCKET_BYTES, BUCKET_BYTES);
        let count = bucket_of.iter().max().map_or(0, |b| *b as usize + 1);
        let buckets = group.grad_buckets(&tensors, &bucket_of)?;
        Ok(Self {
            buckets,
            count,
            group,
        })
    }

    /// The number of buckets.
    pub(crate) fn buckets(&self) -> usize {
        self.count
    }

    /// The next backward pass (the step's last micro-batch) reduces buckets as it fills them.
    pub(crate) fn arm(&self) -> Result<()> {
        self.buckets.arm()
    }

    /// Sums the rest, and `stats`, over every rank; the gradients then hold the sums. Returns
    /// how many buckets backward itself had queued.
    pub(crate) fn finish(&self, stats: &Tensor) -> Result<usize> {
        self.group
            .explained("the gradient all-reduce", self.buckets.finish(stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::c10d::{Backend, Store};
    use std::time::Duration;
    use tch::{Device, Kind};

    /// One rank's step: `accum` micro-batches of loss `(rank + 1) * sum(w * x)` over three
    /// parameters, the last one's backward armed; the gradients after `finish`, the stats, and
    /// how many buckets backward queued.
    /// Gradients, stats, buckets queued by backward, buckets.
    type RankStep = (Vec<Vec<f32>>, Vec<f32>, usize, usize);

    fn rank_step(group: Arc<ProcessGroup>, accum: usize) -> Result<RankStep> {
        let rank = group.rank() as f64;
        let params: Vec<(String, Tensor)> = [300i64, 200_000, 400_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let p = Tensor::f_ones([n], (Kind::Float, Device::Cpu))?.set_requires_grad(true);
                Ok((format!("p{i}"), p))
            })
            .collect::<Result<_>>()?;
        let reducer = GradReducer::new(group, &params)?;
        for micro in 0..accum {
            if micro + 1 == accum {
                reducer.arm()?;
            }
            let mut loss = Tensor::f_zeros([], (Kind::Float, Device::Cpu))?;
            for (_, p) in &params {
                loss = loss.f_add(&p.f_sum(Kind::Float)?.f_mul_scalar(rank + 1.0)?)?;
            }
            loss.f_backward()?;
        }
        let stats = Tensor::from_slice(&[rank as f32 + 1.0, 10.0]);
        let launched = reducer.finish(&stats)?;
        let grads = params
            .iter()
            .map(|(_, p)| Ok(Vec::<f32>::try_from(&p.grad())?))
            .collect::<Result<_>>()?;
        Ok((
            grads,
            Vec::<f32>::try_from(&stats)?,
            launched,
            reducer.buckets(),
        ))
    }

    /// Two ranks (threads, Gloo over loopback) with 2 micro-batches: every gradient is the sum
    /// of both ranks' accumulated ones, and backward itself queued every bucket (the overlap).
    #[test]
    fn buckets_are_summed_over_the_ranks_while_backward_runs() -> Result<()> {
        let timeout = Duration::from_secs(30);
        let store = Store::new("127.0.0.1", 0, true, 2, timeout)?;
        let port = store.port();
        let peer = std::thread::spawn(move || {
            let group = ProcessGroup::join("127.0.0.1", port, 1, 2, Backend::Gloo, timeout)?;
            rank_step(Arc::new(group), 2)
        });
        // Rank 0 serves the store itself; the one above only reserved a port, so it goes.
        drop(store);
        let group = ProcessGroup::join("127.0.0.1", port, 0, 2, Backend::Gloo, timeout)?;
        let (grads, stats, launched, buckets) = rank_step(Arc::new(group), 2)?;
        let (grads1, stats1, _, _) = peer.join().expect("rank 1 panicked")?;
        // Rank r's accumulated gradient is 2 (r + 1); summed: 2 + 4 = 6 everywhere.
        for g in grads.iter().chain(&grads1) {
            assert!(g.iter().all(|v| *v == 6.0), "{:?}", &g[..3]);
        }
        assert_eq!(stats, [3.0, 20.0]);
        assert_eq!(stats1, stats);
        // 1 MiB first bucket: p2 (1.6 MB) alone, then p1 and p0 together.
        assert_eq!(buckets, 2);
        assert_eq!(
            launched, buckets,
            "backward queued every bucket before finish"
        );
        Ok(())
    }

    fn params(sizes: &[i64]) -> Vec<Tensor> {
        sizes
            .iter()
            .map(|&n| Tensor::zeros([n], (Kind::Float, Device::Cpu)))
            .collect()
    }

    #[test]
    fn buckets_fill_from_the_last_parameter_and_respect_their_caps() {
        // 4-byte floats: caps of 40 bytes (first) and 80 (the rest).
        let p = params(&[10, 10, 5, 5, 30, 5]);
        // 20 bytes in bucket 0; 120 alone (over the cap); then 20 + 20 + 40 = 80; then 40.
        assert_eq!(assign_buckets(&p, 40, 80), vec![3, 2, 2, 2, 1, 0]);
        let mixed = vec![
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2], (Kind::Double, Device::Cpu)),
        ];
        assert_eq!(assign_buckets(&mixed, 1 << 20, 1 << 20), vec![1, 0]);
    }
}
