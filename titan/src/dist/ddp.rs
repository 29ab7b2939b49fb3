//! Data parallelism's gradient reduction: each rank's gradients, summed over every rank in
//! buckets (DDP's ~25 MiB), together with the step's loss sum and token count, so dividing by
//! the global count gives exactly the gradient of one batch of every rank's tokens.

use tch::Tensor;

use super::ProcessGroup;
use crate::Result;

/// The most bytes of gradients one all-reduce carries (DDP's `bucket_cap_mb`).
pub(crate) const BUCKET_BYTES: i64 = 25 << 20;

/// Sums `grads` and `stats` over every rank of `group`, in place. Gradients are copied into
/// flat buckets of one dtype and at most [`BUCKET_BYTES`], last parameters first (the order
/// backward produces them); all buckets are queued at once, so their transfers overlap.
pub(crate) fn reduce_gradients(
    group: &ProcessGroup,
    grads: &[Tensor],
    stats: &Tensor,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    let mut buckets: Vec<Vec<&Tensor>> = Vec::new();
    let mut bytes = 0i64;
    for grad in grads.iter().rev() {
        let size = grad.numel() as i64 * grad.kind().elt_size_in_bytes() as i64;
        let fits = buckets.last().is_some_and(|bucket| {
            bucket[0].kind() == grad.kind()
                && bucket[0].device() == grad.device()
                && bytes + size <= BUCKET_BYTES
        });
        if fits {
            bytes += size;
            if let Some(bucket) = buckets.last_mut() {
                bucket.push(grad);
            }
        } else {
            bytes = size;
            buckets.push(vec![grad]);
        }
    }
    let mut flats = buckets
        .iter()
        .map(|bucket| {
            let pieces = bucket
                .iter()
                .map(|g| g.f_reshape([-1]))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Tensor::f_cat(&pieces, 0)?)
        })
        .collect::<Result<Vec<Tensor>>>()?;
    flats.push(stats.shallow_clone());
    group.all_reduce_sum(&flats)?;
    for (bucket, flat) in buckets.iter().zip(&flats) {
        let mut offset = 0;
        for grad in bucket {
            let n = grad.numel() as i64;
            let summed = flat.f_narrow(0, offset, n)?.f_view_as(grad)?;
            grad.shallow_clone().f_copy_(&summed)?;
            offset += n;
        }
    }
    Ok(())
}
