//! Attention over a key/value cache on the CPU, with grouped-query heads and an explicit mask:
//! the CPU backend's attention, and the twin the WebGPU attention kernel is tested against.
//!
//! Plain loops on f32 slices: at decode time each head attends a single query over a few
//! hundred keys, where a general matmul costs more in setup than in arithmetic.
//!
//! The softmax normaliser and the weighted sum of values accumulate in f64, so the result does
//! not depend on the order of the keys: Set-Based Prompting reorders set members in the cache
//! and must get the very same numbers.

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

    fn key(&self, g: usize, j: usize) -> &[f32] {
        let d = self.shape.head_dim;
        let at = (g * self.capacity + j) * d;
        &self.keys[at..at + d]
    }

    fn value(&self, g: usize, j: usize) -> &[f32] {
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
    let attend_one = attend_one_kernel();

    // One job per (head, query): each writes its own output row segment and probability row.
    let out_ptr = SharedOut(out.as_mut_ptr());
    let probs_ptr = SharedOut(probs.as_mut_ptr());
    let job = |index: usize| {
        let (h, i) = (index / t, index % t);
        let g = h / group;
        let query = &q[i * n_heads * head_dim + h * head_dim..][..head_dim];
        let row = &visible[i * total..(i + 1) * total];
        let mut scores = vec![0.0f32; total];
        let mut acc = vec![0.0f64; head_dim];
        attend_one(query, row, cache, g, scale, &mut scores, &mut acc);
        let acc: Vec<f32> = acc.into_iter().map(|a| a as f32).collect();
        // SAFETY: job (h, i) alone writes out[i, h·d .. (h+1)·d] and probs row h·t + i; both
        // buffers outlive the parallel run.
        unsafe {
            let dst = std::slice::from_raw_parts_mut(
                out_ptr.at(i * n_heads * head_dim + h * head_dim),
                head_dim,
            );
            dst.copy_from_slice(&acc);
            if want_probs {
                let dst = std::slice::from_raw_parts_mut(probs_ptr.at((h * t + i) * total), total);
                dst.copy_from_slice(&scores);
            }
        }
    };
    let jobs = n_heads * t;
    #[cfg(not(target_arch = "wasm32"))]
    super::pool::global().run(jobs, &job);
    #[cfg(target_arch = "wasm32")]
    (0..jobs).for_each(job);
    (out, want_probs.then_some(probs))
}

/// One query of head group `g` over the cache: its scores against the keys `row` lets it see,
/// their softmax (into `scores`), and the values weighted by it (into `acc`, zeros on entry).
type AttendOne = fn(&[f32], &[bool], &KvCache, usize, f32, &mut [f32], &mut [f64]);

/// [`attend_one`] compiled for the widest vectors this CPU has. The same source each time, and
/// the compiler neither reorders float sums nor fuses a multiply and an add without being
/// told: wider vectors give the very same numbers, faster (about 2× on AVX-512 here, for a
/// prefill's causal attention, than the SSE2 baseline's two f64 lanes).
fn attend_one_kernel() -> AttendOne {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return |q, row, cache, g, scale, scores, acc| {
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { attend_one_avx512(q, row, cache, g, scale, scores, acc) }
            };
        }
        if is_x86_feature_detected!("avx2") {
            return |q, row, cache, g, scale, scores, acc| {
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { attend_one_avx2(q, row, cache, g, scale, scores, acc) }
            };
        }
    }
    attend_one
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_one_avx512(
    query: &[f32],
    row: &[bool],
    cache: &KvCache,
    g: usize,
    scale: f32,
    scores: &mut [f32],
    acc: &mut [f64],
) {
    attend_one(query, row, cache, g, scale, scores, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_one_avx2(
    query: &[f32],
    row: &[bool],
    cache: &KvCache,
    g: usize,
    scale: f32,
    scores: &mut [f32],
    acc: &mut [f64],
) {
    attend_one(query, row, cache, g, scale, scores, acc)
}

#[inline(always)]
fn attend_one(
    query: &[f32],
    row: &[bool],
    cache: &KvCache,
    g: usize,
    scale: f32,
    scores: &mut [f32],
    acc: &mut [f64],
) {
    for ((s, &visible), j) in scores.iter_mut().zip(row).zip(0..) {
        *s = if visible {
            dot(query, cache.key(g, j)) * scale
        } else {
            f32::NEG_INFINITY
        };
    }
    softmax_in_place(scores);
    weighted_values(scores, cache, g, acc);
}

/// `acc += Σ_j p_j · v_j` in f64, key by key in order (keys of weight 0 skipped), for each
/// element. Elements go 32 at a time, their sums held in registers across all the keys rather
/// than loaded and stored per key; each element's sum is the same sequence of additions.
#[inline(always)]
fn weighted_values(probs: &[f32], cache: &KvCache, g: usize, acc: &mut [f64]) {
    const CHUNK: usize = 32;
    let start = acc.len() / CHUNK * CHUNK;
    let mut chunks = acc.chunks_exact_mut(CHUNK);
    for (c, sums) in chunks.by_ref().enumerate() {
        let sums: &mut [f64; CHUNK] = sums.try_into().expect("chunks of CHUNK");
        let mut held = *sums;
        for (j, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                let v: &[f32; CHUNK] = cache.value(g, j)[c * CHUNK..][..CHUNK]
                    .try_into()
                    .expect("CHUNK values");
                for (a, &v) in held.iter_mut().zip(v) {
                    *a += p as f64 * v as f64;
                }
            }
        }
        *sums = held;
    }
    let rest = chunks.into_remainder();
    for (j, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            for (a, &v) in rest.iter_mut().zip(&cache.value(g, j)[start..]) {
                *a += p as f64 * v as f64;
            }
        }
    }
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

    // The kernel compiled for this CPU's widest vectors gives the baseline build's numbers to
    // the bit, under a mask with holes (as Set-Based Prompting makes) and a head size that
    // leaves a remainder after the 32-element chunks.
    #[test]
    fn wide_vectors_give_the_baseline_bits() {
        let shape = AttentionShape {
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 72,
        };
        let mut rng = SeededRng::new(7);
        let t = 37;
        let kv = shape.head_dim;
        let mut cache = KvCache::new(shape, t).unwrap();
        cache.append(&rng.vec_f32(t * kv, 1.0), &rng.vec_f32(t * kv, 1.0), t);
        let mut visible = Mask::Causal.to_rows(t, 0);
        for i in (0..t * t).step_by(5) {
            visible[i] = false;
        }
        let wide = attend_one_kernel();
        for (h, i) in [(0, 0), (1, 5), (0, 20), (1, 36)] {
            let q = rng.vec_f32(shape.head_dim, 3.0);
            let row = &visible[i * t..(i + 1) * t];
            let run = |f: AttendOne| {
                let (mut scores, mut acc) = (vec![0.0; t], vec![0.0; shape.head_dim]);
                f(&q, row, &cache, h / 2, 0.125, &mut scores, &mut acc);
                (scores, acc)
            };
            let (plain, fast) = (run(attend_one), run(wide));
            assert!(plain
                .0
                .iter()
                .zip(&fast.0)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(plain
                .1
                .iter()
                .zip(&fast.1)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
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
