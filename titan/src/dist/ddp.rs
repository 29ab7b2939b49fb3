//! Data parallelism's gradient reduction, overlapped with backward: each rank's gradients go
//! into buckets (DDP's sizes: 1 MiB first, then 25 MiB) that are all-reduced, summed, while
//! backward is still running; the step's loss and token sums ride along, so dividing by the
//! global count gives exactly the gradient of one batch of every rank's tokens.

use std::cell::{Cell, RefCell};
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

/// The bucket of each of `params`, filled in `order` (parameter indices, the first ready
/// first; those it leaves out follow, last index first): at most `first` bytes in bucket 0 and
/// `rest` in each other, one dtype and device per bucket. A parameter larger than a bucket gets
/// one of its own.
pub(crate) fn assign_buckets(
    params: &[Tensor],
    order: &[usize],
    first: i64,
    rest: i64,
) -> Vec<u64> {
    let mut seen = vec![false; params.len()];
    let mut sequence: Vec<usize> = Vec::with_capacity(params.len());
    for i in order.iter().copied().chain((0..params.len()).rev()) {
        if i < params.len() && !seen[i] {
            seen[i] = true;
            sequence.push(i);
        }
    }
    let mut out = vec![0u64; params.len()];
    let (mut bucket, mut bytes, mut kind) = (0u64, 0i64, None);
    for i in sequence {
        let p = &params[i];
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

/// The gradient reduction of a data-parallel run over `group`. Its first buckets follow the
/// parameters' order, last first; after the first step they follow the order in which backward
/// made the gradients ready (rank 0's, the same on every rank), as DDP rebuilds its buckets, so
/// the first bucket is the first one full.
pub(crate) struct GradReducer {
    buckets: RefCell<GradBuckets>,
    count: Cell<usize>,
    rebuilt: Cell<bool>,
    params: Vec<Tensor>,
    /// The parameters' names, for errors.
    names: Vec<String>,
    group: Arc<ProcessGroup>,
}

impl GradReducer {
    /// Hooks `params` (named, trainable) into buckets over `group`.
    pub(crate) fn new(group: Arc<ProcessGroup>, params: &[(String, Tensor)]) -> Result<Self> {
        let names: Vec<String> = params.iter().map(|(name, _)| name.clone()).collect();
        let params: Vec<Tensor> = params.iter().map(|(_, p)| p.shallow_clone()).collect();
        let bucket_of = assign_buckets(&params, &[], FIRST_BUCKET_BYTES, BUCKET_BYTES);
        let buckets = group.grad_buckets(&params, &bucket_of)?;
        Ok(Self {
            buckets: RefCell::new(buckets),
            count: Cell::new(count(&bucket_of)),
            rebuilt: Cell::new(false),
            params,
            names,
            group,
        })
    }

    /// The number of buckets.
    pub(crate) fn buckets(&self) -> usize {
        self.count.get()
    }

    /// The next backward pass (the step's last micro-batch) reduces buckets as it fills them.
    pub(crate) fn arm(&self) -> Result<()> {
        self.buckets.borrow().arm()
    }

    /// Sums the rest, and `stats`, over every rank; the gradients then hold the sums, and a
    /// parameter no rank has a gradient for keeps none (as in one process, where the optimizer
    /// skips it). Returns how many buckets backward itself had queued. After the first step,
    /// rebuilds the buckets in the order backward made the gradients ready.
    pub(crate) fn finish(&self, stats: &Tensor) -> Result<usize> {
        let finished = self.buckets.borrow().finish(stats);
        // A refused double arrival names its parameter (the shim knows only its index).
        let finished = finished.map_err(|e| match self.buckets.borrow().refired() {
            Some(i) => crate::Error::Distributed(format!(
                "{e} (parameter {i} is `{}`)",
                self.names.get(i).map_or("?", String::as_str)
            )),
            None => e,
        });
        let launched = self.group.explained("the gradient all-reduce", finished)?;
        if !self.rebuilt.replace(true) && self.buckets.borrow().overlaps() {
            self.rebuild()?;
        }
        Ok(launched)
    }

    /// Whether a step's reduction can be captured in a CUDA graph: the buckets are rebuilt (after
    /// the first step) and `finish` reads nothing on the host.
    pub(crate) fn capturable(&self) -> bool {
        self.rebuilt.get() && self.buckets.borrow().capturable()
    }

    /// Whether `ok` holds on every rank (one host-side reduction of a flag).
    pub(crate) fn all_ranks(&self, ok: bool) -> Result<bool> {
        let device = self.params.first().map_or(tch::Device::Cpu, Tensor::device);
        let failed = self
            .group
            .max_values(&[if ok { 0.0 } else { 1.0 }], device)?;
        Ok(failed.first().is_some_and(|f| *f == 0.0))
    }

    /// New buckets in rank 0's order of ready gradients.
    fn rebuild(&self) -> Result<()> {
        let n = self.params.len();
        let order = self.buckets.borrow().order(n)?;
        let mut positions: Vec<i64> = order.iter().map(|&i| i as i64).collect();
        positions.resize(n, -1);
        let device = self.params.first().map_or(tch::Device::Cpu, Tensor::device);
        let shared = Tensor::from_slice(&positions).f_to_device(device)?;
        self.group.broadcast(std::slice::from_ref(&shared), 0)?;
        let shared = Vec::<i64>::try_from(&shared.f_to_device(tch::Device::Cpu)?)?;
        let order: Vec<usize> = shared
            .iter()
            .filter_map(|&i| usize::try_from(i).ok())
            .collect();
        let bucket_of = assign_buckets(&self.params, &order, FIRST_BUCKET_BYTES, BUCKET_BYTES);
        // The old buckets and their hooks go as the new ones take their place (no backward
        // runs in between).
        let fresh = self.group.grad_buckets(&self.params, &bucket_of)?;
        *self.buckets.borrow_mut() = fresh;
        self.count.set(count(&bucket_of));
        Ok(())
    }
}

fn count(bucket_of: &[u64]) -> usize {
    bucket_of.iter().max().map_or(0, |b| *b as usize + 1)
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

    /// Three parameters of ones, `p0`–`p2`, of 300, 200,000 and 400,000 elements (1.2 KB, 0.8
    /// and 1.6 MB: more than one bucket).
    fn three_params() -> Result<Vec<(String, Tensor)>> {
        [300i64, 200_000, 400_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let p = Tensor::f_ones([n], (Kind::Float, Device::Cpu))?.set_requires_grad(true);
                Ok((format!("p{i}"), p))
            })
            .collect()
    }

    fn rank_step(group: Arc<ProcessGroup>, accum: usize) -> Result<RankStep> {
        let rank = group.rank() as f64;
        let params = three_params()?;
        let reducer = GradReducer::new(group, &params)?;
        assert!(!reducer.capturable(), "before the first step");
        // Two steps: the second runs on the buckets rebuilt in backward's order.
        let (mut launched, mut summed) = (0, Vec::new());
        for _step in 0..2 {
            zero_grads(&params)?;
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
            launched = reducer.finish(&stats)?;
            summed = Vec::<f32>::try_from(&stats)?;
        }
        assert!(
            reducer.capturable(),
            "every parameter used, buckets rebuilt"
        );
        // Rank 1 says no: no rank hears yes.
        assert!(!reducer.all_ranks(rank == 0.0)?, "one rank said no");
        assert!(reducer.all_ranks(true)?, "every rank said yes");
        let grads = params
            .iter()
            .map(|(_, p)| Ok(Vec::<f32>::try_from(&p.grad())?))
            .collect::<Result<_>>()?;
        Ok((grads, summed, launched, reducer.buckets()))
    }

    /// `f` on two ranks (threads, Gloo over loopback): rank 0's result and rank 1's.
    fn on_two_ranks<T: Send + 'static>(f: fn(Arc<ProcessGroup>) -> Result<T>) -> Result<(T, T)> {
        let timeout = Duration::from_secs(30);
        let store = Store::new("127.0.0.1", 0, true, 2, timeout)?;
        let port = store.port();
        let peer = std::thread::spawn(move || {
            let group = ProcessGroup::join("127.0.0.1", port, 1, 2, Backend::Gloo, timeout)?;
            f(Arc::new(group))
        });
        // Rank 0 serves the store itself; the one above only reserved a port, so it goes.
        drop(store);
        let group = ProcessGroup::join("127.0.0.1", port, 0, 2, Backend::Gloo, timeout)?;
        let first = f(Arc::new(group))?;
        Ok((first, peer.join().expect("rank 1 panicked")?))
    }

    /// A rank started with another world size than rank 0's stops at once, naming both (it
    /// does not wait for a group that cannot form).
    #[test]
    fn a_rank_with_another_world_size_stops_naming_rank_zeros() -> Result<()> {
        let timeout = Duration::from_secs(3);
        let store = Store::new("127.0.0.1", 0, true, 2, timeout)?;
        let port = store.port();
        drop(store);
        let zero = std::thread::spawn(move || {
            ProcessGroup::join("127.0.0.1", port, 0, 2, Backend::Gloo, timeout).map(|_| ())
        });
        let started = std::time::Instant::now();
        let err = ProcessGroup::join("127.0.0.1", port, 1, 3, Backend::Gloo, timeout)
            .map(|_| ())
            .expect_err("3 ranks against rank 0's 2");
        assert!(
            started.elapsed() < timeout,
            "it did not wait out the timeout"
        );
        let err = err.to_string();
        assert!(
            err.contains(
                "rank 1 joins with WORLD_SIZE = 3, backend Gloo, but rank 0 with WORLD_SIZE = 2"
            ),
            "{err}"
        );
        // Rank 0, alone, gives up after the timeout.
        assert!(zero.join().expect("rank 0 panicked").is_err());
        Ok(())
    }

    /// Two ranks with 2 micro-batches: every gradient is the sum of both ranks' accumulated
    /// ones, and backward itself queued every bucket (the overlap).
    #[test]
    fn buckets_are_summed_over_the_ranks_while_backward_runs() -> Result<()> {
        let ((grads, stats, launched, buckets), (grads1, stats1, _, _)) =
            on_two_ranks(|group| rank_step(group, 2))?;
        // Rank r's accumulated gradient is 2 (r + 1); summed: 2 + 4 = 6 everywhere.
        for g in grads.iter().chain(&grads1) {
            assert!(g.iter().all(|v| *v == 6.0), "{:?}", &g[..3]);
        }
        assert_eq!(stats, [3.0, 20.0]);
        assert_eq!(stats1, stats);
        // 1 MiB first bucket: p2 (1.6 MB) alone, then p1 and p0 together (in the order backward
        // made them ready, rebuilt after step 1).
        assert_eq!(buckets, 2);
        assert_eq!(launched, buckets, "backward queued every bucket in step 2");
        Ok(())
    }

    /// One rank's two steps over three parameters: `p0` used by every rank, `p1` by rank 1
    /// only, `p2` by none. Its gradients after each step (`None`: undefined).
    fn partly_used(group: Arc<ProcessGroup>) -> Result<Vec<Vec<Option<f32>>>> {
        let rank = group.rank();
        let params: Vec<(String, Tensor)> = (0..3)
            .map(|i| {
                let p = Tensor::f_ones([4], (Kind::Float, Device::Cpu))?.set_requires_grad(true);
                Ok((format!("p{i}"), p))
            })
            .collect::<Result<_>>()?;
        let reducer = GradReducer::new(group, &params)?;
        let mut steps = Vec::new();
        for _step in 0..2 {
            zero_grads(&params)?;
            reducer.arm()?;
            let mut loss = params[0].1.f_sum(Kind::Float)?;
            if rank == 1 {
                loss = loss.f_add(&params[1].1.f_sum(Kind::Float)?.f_mul_scalar(3.0)?)?;
            }
            loss.f_backward()?;
            reducer.finish(&Tensor::from_slice(&[1.0f32]))?;
            steps.push(
                params
                    .iter()
                    .map(|(_, p)| {
                        let g = p.grad();
                        Ok(match g.defined() {
                            true => Some(g.f_sum(Kind::Float)?.double_value(&[]) as f32),
                            false => None,
                        })
                    })
                    .collect::<Result<_>>()?,
            );
        }
        // p2 is still unused everywhere: finish reads its flag on the host each step.
        assert!(!reducer.capturable(), "a parameter no rank used");
        Ok(steps)
    }

    /// A parameter no rank used keeps no gradient (one process would leave it undefined, and
    /// the optimizer skip it); one that only rank 1 used gets its gradient on both ranks.
    #[test]
    fn a_parameter_no_rank_used_keeps_no_gradient() -> Result<()> {
        let (steps, steps1) = on_two_ranks(partly_used)?;
        // Sums over 4 elements: p0 gets 1 from each rank, p1 3 from rank 1.
        let expected = vec![Some(8.0), Some(12.0), None];
        assert_eq!(steps, vec![expected.clone(), expected]);
        assert_eq!(steps1, steps);
        Ok(())
    }

    /// Buckets backward queued in the second of two steps of a tied-embedding Llama scoring
    /// its logits by slices on a 1-rank Gloo group, and the slices scored.
    fn sliced_steps(checkpointing: bool) -> Result<(usize, usize, usize)> {
        let timeout = Duration::from_secs(30);
        let port = Store::new("127.0.0.1", 0, true, 1, timeout)?.port();
        let group = ProcessGroup::join("127.0.0.1", port, 0, 1, Backend::Gloo, timeout)?;
        let config = crate::model::testing::small_llama(50, true);
        // 4 positions a slice.
        let model = crate::Llama::new(config, Device::Cpu)?
            .with_activation_checkpointing(checkpointing)
            .with_logits_chunk(4 * 50)?;
        let params = crate::Model::parameters(&model).named();
        let reducer = GradReducer::new(Arc::new(group), &params)?;
        let ids = Tensor::f_randint(50, [2, 8], (Kind::Int64, Device::Cpu))?;
        let labels = crate::batch::HfLabels(ids.copy());
        let mut scorer = crate::model::testing::BySlices {
            labels: &labels,
            slices: 0,
        };
        let mut launched = 0;
        for _step in 0..2 {
            zero_grads(&params)?;
            reducer.arm()?;
            let input = crate::batch::TokenIds(ids.shallow_clone());
            let _scored = crate::Model::forward_backward(&model, &input, &mut scorer)?;
            launched = reducer.finish(&Tensor::from_slice(&[1.0f32]))?;
        }
        Ok((launched, reducer.buckets(), scorer.slices))
    }

    /// The slices of the logits run outside the parameters' graph: each parameter's gradient
    /// arrives once, so backward queues every bucket. With activation checkpointing the tied
    /// embedding's arrives twice (the head's backward, then block 0's), which the reducer
    /// notices and answers by reducing after backward: the contrast shows the check can fail.
    #[test]
    fn logits_scored_by_slices_bring_each_gradient_once() -> Result<()> {
        let (launched, buckets, slices) = sliced_steps(false)?;
        assert_eq!(slices, 8, "16 positions, 4 a slice, 2 steps");
        assert_eq!(launched, buckets, "backward queued every bucket");
        let (launched, _, _) = sliced_steps(true)?;
        assert_eq!(
            launched, 0,
            "a gradient that arrives twice stops the overlap"
        );
        Ok(())
    }

    /// One rank's three steps over three parameters, each with gradient 2 on every element: rank
    /// 0 in one backward pass, rank 1 from step `from` (0-based) on in two, the second bringing
    /// `p0`'s gradient again (a weight whose use differs by rank). The least and greatest element
    /// of each gradient after each step, and whether backward still overlaps.
    fn arrives_twice_on_rank_one(
        group: Arc<ProcessGroup>,
        from: usize,
    ) -> Result<(Vec<Vec<f32>>, bool)> {
        let rank = group.rank();
        let params = three_params()?;
        let sum = |i: usize, by: f64| params[i].1.f_sum(Kind::Float)?.f_mul_scalar(by);
        let reducer = GradReducer::new(group, &params)?;
        let mut sums = Vec::new();
        for step in 0..3 {
            zero_grads(&params)?;
            reducer.arm()?;
            if rank == 0 || step < from {
                sum(0, 2.0)?
                    .f_add(&sum(1, 2.0)?)?
                    .f_add(&sum(2, 2.0)?)?
                    .f_backward()?;
            } else {
                sum(0, 1.0)?
                    .f_add(&sum(1, 2.0)?)?
                    .f_add(&sum(2, 2.0)?)?
                    .f_backward()?;
                sum(0, 1.0)?.f_backward()?;
            }
            reducer.finish(&Tensor::from_slice(&[1.0f32]))?;
            for (_, p) in &params {
                let g = Vec::<f32>::try_from(&p.grad())?;
                let least = g.iter().copied().fold(f32::MAX, f32::min);
                let greatest = g.iter().copied().fold(f32::MIN, f32::max);
                sums.push(vec![least, greatest]);
            }
        }
        Ok((sums, reducer.buckets.borrow().overlaps()))
    }

    /// A gradient that arrives twice on one rank only (its first bucket already gone with half
    /// of it) is reduced again on every rank: the sums are whole, the ranks' collectives still
    /// pair up, and both stop overlapping together. At the first step (every parameter still
    /// undecided), and at the third, after the buckets were rebuilt and every parameter had a
    /// gradient (Gloo still reads the flag on the host).
    #[test]
    fn a_gradient_that_arrives_twice_on_one_rank_only_is_reduced_again_everywhere() -> Result<()> {
        let first = |group| arrives_twice_on_rank_one(group, 0);
        let third = |group| arrives_twice_on_rank_one(group, 2);
        for run in [first as fn(_) -> _, third] {
            let ((sums, overlaps), (sums1, overlaps1)) = on_two_ranks(run)?;
            // 2 from each rank on every element, every step: the least and the greatest are 4.
            assert_eq!(sums, vec![vec![4.0, 4.0]; 9]);
            assert_eq!(sums1, sums);
            assert!(
                !overlaps && !overlaps1,
                "both ranks reduce after backward now"
            );
        }
        Ok(())
    }

    /// Zeroes the gradients `params` have, in place, as the optimizers do.
    fn zero_grads(params: &[(String, Tensor)]) -> Result<()> {
        for (_, p) in params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.f_zero_()?;
            }
        }
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
        assert_eq!(assign_buckets(&p, &[], 40, 80), vec![3, 2, 2, 2, 1, 0]);
        // In a given order, then the rest last first (5, 4, 3, 2): 0 alone, 1 and 5, 4, 3 and 2.
        assert_eq!(assign_buckets(&p, &[0, 1], 40, 80), vec![0, 1, 3, 3, 2, 1]);
        let mixed = vec![
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2], (Kind::Double, Device::Cpu)),
        ];
        assert_eq!(assign_buckets(&mixed, &[], 1 << 20, 1 << 20), vec![1, 0]);
    }
}
