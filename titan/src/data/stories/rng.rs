//! Seeded randomness: the per-story RNG and the helpers that sample the tables. Ranges are
//! sampled as u32 so results do not depend on the width of usize.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// SplitMix64 finaliser: spreads nearby seeds/indices over the whole key space
/// so that story `i` and story `i + 1` get unrelated RNG streams.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Per-story RNG, independent of iteration order and platform word size.
pub(super) fn story_rng(seed: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(splitmix64(seed ^ splitmix64(index)))
}

/// Uniform pick from a non-empty constant table.
pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX).max(1);
    &items[rng.random_range(0..n) as usize]
}

/// `n` distinct picks (fewer if the table is shorter), via a partial shuffle.
pub(super) fn pick_distinct<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T], n: usize) -> Vec<&'a T> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let n = n.min(idx.len());
    for i in 0..n {
        let remaining = u32::try_from(idx.len() - i).unwrap_or(u32::MAX);
        let j = i + rng.random_range(0..remaining) as usize;
        idx.swap(i, j);
    }
    idx[..n].iter().map(|&i| &items[i]).collect()
}

/// True with probability `percent`/100.
pub(super) fn chance(rng: &mut ChaCha8Rng, percent: u32) -> bool {
    rng.random_range(0..100u32) < percent
}
