//! Attention over a key/value cache on the CPU, with grouped-query heads and an explicit mask:
//! the CPU backend's attention, and the twin the WebGPU attention kernel is tested against.
//!
//! Plain loops on f32 slices: at decode time each head attends a single query over a few
//! hundred keys, where a general matmul costs more in setup than in arithmetic.
//!
//! The softmax normaliser and the weighted sum of values accumulate in f64, so the result does
//! not depend on the order of the keys: Set-Based Prompting reorders set members in the cache
//! and must get the very same numbers.

use super::attend_group::{attend_group_kernel, KeyTiles};
use crate::backend::checks::CacheState;
use crate::backend::{AttentionShape, Mask, RopeStyle};
use crate::error::{Error, Result};

/// One layer's keys and values: `(kv_heads, capacity, head_dim)` each, row-major.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
    pub len: usize,
    pub capacity: usize,
    pub shape: AttentionShape,
}

impl KvCache {
    pub fn new(shape: AttentionShape, capacity: usize) -> Result<Self> {
        let n = shape
            .n_kv_heads
            .checked_mul(capacity)
            .and_then(|n| n.checked_mul(shape.head_dim))
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "a KV cache of {capacity} positions for {shape:?} does not fit in memory"
                ))
            })?;
        Ok(KvCache {
            keys: vec![0.0; n],
            values: vec![0.0; n],
            len: 0,
            capacity,
            shape,
        })
    }

    /// What [`crate::backend::checks::attention`] needs to know.
    pub fn state(&self) -> CacheState {
        CacheState {
            len: self.len,
            capacity: self.capacity,
            shape: self.shape,
        }
    }

    /// Appends `k`, `v` of `t` new tokens, each `(t, kv_heads·head_dim)`; the caller has checked
    /// the shapes and the room left ([`crate::backend::checks::attention`]).
    pub fn append(&mut self, k: &[f32], v: &[f32], t: usize) {
        let AttentionShape {
            n_kv_heads,
            head_dim,
            ..
        } = self.shape;
        for i in 0..t {
            for g in 0..n_kv_heads {
                let src = i * n_kv_heads * head_dim + g * head_dim;
                let dst = (g * self.capacity + self.len + i) * head_dim;
                self.keys[dst..dst + head_dim].copy_from_slice(&k[src..src + head_dim]);
                self.values[dst..dst + head_dim].copy_from_slice(&v[src..src + head_dim]);
            }
        }
        self.len += t;
    }

    /// Moves rows `keep` to the front in order and turns each kept key by its `angles` row
    /// (`head_dim / 2` pairs of (cos, sin), pairs chosen by `style`); the caller has checked
    /// that `keep` ascends below the length ([`crate::backend::checks::cache_keep`]). The CPU
    /// twin of the WebGPU `kv_keep` kernel.
    pub fn keep(&mut self, keep: &[usize], angles: &[[f32; 2]], style: RopeStyle) {
        let d = self.shape.head_dim;
        let half = d / 2;
        for g in 0..self.shape.n_kv_heads {
            // Slots ascend, so a row only ever moves down onto one already moved or dropped.
            for (i, &slot) in keep.iter().enumerate() {
                let (src, dst) = ((g * self.capacity + slot) * d, (g * self.capacity + i) * d);
                self.keys.copy_within(src..src + d, dst);
                self.values.copy_within(src..src + d, dst);
                let key = &mut self.keys[dst..dst + d];
                for (p, [cos, sin]) in angles[i * half..(i + 1) * half].iter().enumerate() {
                    let (first, second) = match style {
                        RopeStyle::Interleaved => (2 * p, 2 * p + 1),
                        RopeStyle::Halves => (p, p + half),
                    };
                    let (a, b) = (key[first], key[second]);
                    key[first] = a * cos - b * sin;
                    key[second] = a * sin + b * cos;
                }
            }
        }
        self.len = keep.len();
    }

    pub(super) fn key(&self, g: usize, j: usize) -> &[f32] {
        let d = self.shape.head_dim;
        let at = (g * self.capacity + j) * d;
        &self.keys[at..at + d]
    }

    pub(super) fn value(&self, g: usize, j: usize) -> &[f32] {
        let d = self.shape.head_dim;
        let at = (g * self.capacity + j) * d;
        &self.values[at..at + d]
    }
}

/// Attends the `t` newest queries `q` `(t, n_heads·head_dim)` over everything in `cache`
/// (which already holds their own keys) under `mask`. Returns `(t, n_heads·head_dim)` and,
/// when asked, the probabilities `(n_heads·t, cache.len)`, head-major.
pub fn attend(
    q: &[f32],
    t: usize,
    cache: &KvCache,
    mask: &Mask,
    want_probs: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim,
    } = cache.shape;
    let total = cache.len;
    let cached = total - t;
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0f32; t * n_heads * head_dim];
    let mut probs = if want_probs {
        vec![0.0f32; n_heads * t * total]
    } else {
        Vec::new()
    };
    let visible = mask.to_rows(t, cached); // (t, total)
    let attend_group = attend_group_kernel();
    // Several queries (a prefill) read the keys transposed, a copy that costs about one
    // query's scores to make.
    let tiles = (t >= 4).then(|| KeyTiles::new(cache));

    // One job per (query, key group): the group's heads share each key and value they read;
    // each job writes its own heads' output and probability rows.
    let out_ptr = SharedOut(out.as_mut_ptr());
    let probs_ptr = SharedOut(probs.as_mut_ptr());
    let job = |index: usize| {
        let (g, i) = (index / t, index % t);
        let heads = g * group..(g + 1) * group;
        let first = i * n_heads * head_dim + heads.start * head_dim;
        let queries = &q[first..first + group * head_dim]; // (group, head_dim)
        let row = &visible[i * total..(i + 1) * total];
        let mut scores = vec![0.0f32; group * total]; // (group, total)
        let mut acc = vec![0.0f64; group * head_dim]; // (group, head_dim)
        attend_group(
            queries,
            row,
            cache,
            tiles.as_ref(),
            g,
            scale,
            &mut scores,
            &mut acc,
        );
        // SAFETY: job (g, i) alone writes out[i, heads of g] and the probability rows
        // h·t + i of its heads h; both buffers outlive the parallel run.
        unsafe {
            let dst = std::slice::from_raw_parts_mut(out_ptr.at(first), group * head_dim);
            for (d, &a) in dst.iter_mut().zip(&acc) {
                *d = a as f32;
            }
            if want_probs {
                for (h, scores) in heads.zip(scores.chunks_exact(total)) {
                    let dst =
                        std::slice::from_raw_parts_mut(probs_ptr.at((h * t + i) * total), total);
                    dst.copy_from_slice(scores);
                }
            }
        }
    };
    let jobs = n_kv_heads * t;
    #[cfg(not(target_arch = "wasm32"))]
    super::pool::global().run(jobs, &job);
    #[cfg(target_arch = "wasm32")]
    (0..jobs).for_each(job);
    (out, want_probs.then_some(probs))
}

struct SharedOut(*mut f32);
// SAFETY: jobs write disjoint parts (see `attend`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method (not the field) so closures capture the whole `Sync` wrapper.
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Σ a·b with eight running sums, so the compiler can vectorize it (inlined, so that it is
/// vectorized for the caller's instruction set).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            sums[k] += x[k] * y[k];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Softmax over a row; masked entries (-inf) become 0. A fully masked row stays all zero. The
/// normaliser is summed in f64 (order-independent, see the module comment).
#[inline(always)]
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        row.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in row.iter_mut() {
        // exp(-∞) is 0: masked keys (half of a causal prefill's) skip the call.
        *v = if *v == f32::NEG_INFINITY {
            0.0
        } else {
            (*v - max).exp()
        };
        sum += *v as f64;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_close, SeededRng};

    /// Straight from the definition, one head and query at a time, in f64.
    fn naive(
        q: &[f32],
        keys: &[Vec<f32>],
        values: &[Vec<f32>],
        shape: AttentionShape,
        t: usize,
        mask: &Mask,
    ) -> Vec<f32> {
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = shape;
        let total = keys.len();
        let cached = total - t;
        let mut out = vec![0.0; t * n_heads * head_dim];
        for i in 0..t {
            for h in 0..n_heads {
                let g = h / (n_heads / n_kv_heads);
                let qv = &q[i * n_heads * head_dim + h * head_dim..][..head_dim];
                let mut s: Vec<f64> = (0..total)
                    .map(|j| {
                        if mask.visible(i, j, cached, total) {
                            let k = &keys[j][g * head_dim..][..head_dim];
                            qv.iter()
                                .zip(k)
                                .map(|(a, b)| (*a as f64) * (*b as f64))
                                .sum::<f64>()
                                / (head_dim as f64).sqrt()
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                s.iter_mut().for_each(|v| *v = (*v - m).exp() / z);
                for x in 0..head_dim {
                    out[i * n_heads * head_dim + h * head_dim + x] = (0..total)
                        .map(|j| s[j] * values[j][g * head_dim + x] as f64)
                        .sum::<f64>()
                        as f32;
                }
            }
        }
        out
    }

    // Every kernel — the baseline and the one for this CPU's widest vectors, reading the keys
    // one by one or transposed — gives the numbers of the plain per-head loops it replaced,
    // to the bit: under a mask with holes (as Set-Based Prompting makes), for key counts that
    // leave partial tiles, and a head size that leaves a remainder after the eight partial
    // sums and the chunks of values.
    #[test]
    fn every_kernel_gives_the_plain_loops_bits() {
        use super::super::attend_group::{attend_group_baseline, attend_group_kernel};
        let shape = AttentionShape {
            n_heads: 6,
            n_kv_heads: 1,
            head_dim: 76,
        };
        let (mut rng, t, d) = (SeededRng::new(7), 37, shape.head_dim);
        let mut cache = KvCache::new(shape, t).unwrap();
        cache.append(&rng.vec_f32(t * d, 1.0), &rng.vec_f32(t * d, 1.0), t);
        let tiles = KeyTiles::new(&cache);
        let mut visible = Mask::Causal.to_rows(t, 0);
        for i in (0..t * t).step_by(5) {
            visible[i] = false;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for i in [0, 5, 20, 36] {
            let q = rng.vec_f32(shape.n_heads * d, 3.0);
            let row = &visible[i * t..(i + 1) * t];
            // The loops as they were: per head, scores, softmax, then the f64 sum key by key.
            let (mut want_scores, mut want_out) = (Vec::new(), Vec::new());
            for query in q.chunks_exact(d) {
                let mut scores: Vec<f32> = (0..t)
                    .map(|j| match row[j] {
                        true => dot(query, cache.key(0, j)) * 0.125,
                        false => f32::NEG_INFINITY,
                    })
                    .collect();
                softmax_in_place(&mut scores);
                let mut acc = vec![0.0f64; d];
                for (j, &p) in scores.iter().enumerate() {
                    if p > 0.0 {
                        for (a, &v) in acc.iter_mut().zip(cache.value(0, j)) {
                            *a += p as f64 * v as f64;
                        }
                    }
                }
                want_scores.extend(scores);
                want_out.extend(acc.into_iter().map(|a| a as f32));
            }
            for (name, f, tiles) in [
                ("baseline, keys one by one", attend_group_baseline(), None),
                ("baseline, tiles", attend_group_baseline(), Some(&tiles)),
                ("this CPU's, keys one by one", attend_group_kernel(), None),
                ("this CPU's, tiles", attend_group_kernel(), Some(&tiles)),
            ] {
                let (mut scores, mut acc) = (vec![0.0; 6 * t], vec![0.0f64; 6 * d]);
                f(&q, row, &cache, tiles, 0, 0.125, &mut scores, &mut acc);
                let out: Vec<f32> = acc.into_iter().map(|a| a as f32).collect();
                assert_eq!(
                    bits(&scores),
                    bits(&want_scores),
                    "query {i}: {name}, scores"
                );
                assert_eq!(bits(&out), bits(&want_out), "query {i}: {name}, output");
            }
        }
    }

    #[test]
    fn attend_matches_the_definition() {
        let shape = AttentionShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 12,
        };
        let mut rng = SeededRng::new(5);
        let kv = shape.n_kv_heads * shape.head_dim;
        let (first, second) = (7, 3);
        let mut cache = KvCache::new(shape, 16).unwrap();
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for t in [first, second] {
            let k = rng.vec_f32(t * kv, 1.0);
            let v = rng.vec_f32(t * kv, 1.0);
            let q = rng.vec_f32(t * shape.n_heads * shape.head_dim, 1.0);
            keys.extend(k.chunks(kv).map(|c| c.to_vec()));
            values.extend(v.chunks(kv).map(|c| c.to_vec()));
            cache.append(&k, &v, t);
            let (got, probs) = attend(&q, t, &cache, &Mask::Causal, true);
            let want = naive(&q, &keys, &values, shape, t, &Mask::Causal);
            check_close("attention", &got, &want, 1e-5, 1e-4).unwrap();
            let probs = probs.unwrap();
            for row in probs.chunks(cache.len) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }
}
