//! One query position's attention over a KV cache, for the heads that share a key group —
//! their scores against the keys the query may see, their softmax, and the values weighted by
//! it — compiled for the widest vectors the CPU has. The heads share what they read: each tile
//! of keys, each block of values (widened to f64 once for them all).
//!
//! The same numbers whatever the instruction set, and whether the keys are read one by one
//! (decode) or from a transposed copy (prefill):
//! - a score is [`dot`]`(q, k) · scale`: eight partial sums over the elements, added up in
//!   order from -0.0 (as `Iterator::sum` folds), then the tail's sum. The transposed copy
//!   ([`KeyTiles`]) puts 16 keys side by side, so that each partial sum is a vector lane and
//!   the same additions run for 16 keys at once, without a horizontal sum per key;
//! - a weighted value adds `p·v` key by key in f64. A product of two f32 is exact in f64, so a
//!   fused multiply-add (where the CPU has one) rounds exactly as the multiply-then-add.
//!
//! The compiler never reorders float operations nor fuses them unless told (`mul_add`), so
//! the one source compiled for AVX-512, AVX2, SSE2 or wasm simd128 gives the same bits.

use super::float;
use super::kv_cache::KvCache;

/// Keys side by side in the transposed copy.
const KEYS: usize = 16;

/// One layer's keys, transposed in tiles of [`KEYS`]: for key group g and tile k, element e of
/// the tile's keys side by side (past the last key, zeros). Built once per prefill step for
/// all its queries; decode reads the keys as they are.
pub struct KeyTiles {
    data: Vec<f32>,
    tiles: usize,
    head_dim: usize,
}

impl KeyTiles {
    pub fn new(cache: &KvCache) -> Self {
        let (groups, d, len) = (cache.shape.n_kv_heads, cache.shape.head_dim, cache.len);
        let tiles = len.div_ceil(KEYS);
        let mut data = vec![0.0; groups * tiles * d * KEYS];
        for g in 0..groups {
            for j in 0..len {
                let tile = &mut data[(g * tiles + j / KEYS) * d * KEYS..][..d * KEYS];
                for (e, &k) in cache.key(g, j).iter().enumerate() {
                    tile[e * KEYS + j % KEYS] = k;
                }
            }
        }
        KeyTiles {
            data,
            tiles,
            head_dim: d,
        }
    }

    /// Tile `k` of group `g`: `(head_dim, KEYS)`.
    fn tile(&self, g: usize, k: usize) -> &[f32] {
        let n = self.head_dim * KEYS;
        &self.data[(g * self.tiles + k) * n..][..n]
    }
}

/// Query positions side by side (one at decode, a few in a prefill), the heads of key group `g`
/// at each (their queries `(positions, heads, head_dim)`): each head's scores against the keys
/// that its position's row of `rows` (`(positions, cache.len)`) lets it see (from `tiles` if
/// given), their softmax (into `scores`, `(positions·heads, keys)`), and the values weighted by
/// it (into `acc`, `(positions·heads, head_dim)`, zeros on entry). The heads share each key
/// they read, and the heads of every position each value block.
pub type AttendGroup =
    fn(&[f32], &[bool], &KvCache, Option<&KeyTiles>, usize, f32, &mut [f32], &mut [f64]);

/// [`attend_group`] for this CPU: 16 keys and 32 values (of two heads) at a time in AVX-512's
/// 32 registers, 8 and 16 in AVX2's 16, 4 and 16 in 128-bit vectors (SSE2, wasm simd128: 16
/// values are 8 f64 pairs, which made a decode step's attention 6% faster in Chromium than 8;
/// 32 was no faster, `wasm_speed`'s `attention_decode`).
pub fn attend_group_kernel() -> AttendGroup {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            return |q, rows, cache, tiles, g, scale, scores, acc| {
                // SAFETY: the CPU has AVX-512F and FMA (checked above).
                unsafe { attend_group_avx512(q, rows, cache, tiles, g, scale, scores, acc) }
            };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return |q, rows, cache, tiles, g, scale, scores, acc| {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { attend_group_avx2(q, rows, cache, tiles, g, scale, scores, acc) }
            };
        }
    }
    attend_group_128_bits()
}

/// The kernel for 128-bit vectors without a fused multiply-add (SSE2, wasm simd128).
pub fn attend_group_128_bits() -> AttendGroup {
    attend_group::<4, 16, false, 1, 16>
}

/// The kernel without wide vectors or a fused multiply-add: the baseline the others equal.
#[cfg(test)]
pub fn attend_group_baseline() -> AttendGroup {
    attend_group::<4, 8, false, 1, 16>
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_group_avx512(
    queries: &[f32],
    rows: &[bool],
    cache: &KvCache,
    tiles: Option<&KeyTiles>,
    g: usize,
    scale: f32,
    scores: &mut [f32],
    acc: &mut [f64],
) {
    attend_group::<16, 32, true, 2, 8>(queries, rows, cache, tiles, g, scale, scores, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_group_avx2(
    queries: &[f32],
    rows: &[bool],
    cache: &KvCache,
    tiles: Option<&KeyTiles>,
    g: usize,
    scale: f32,
    scores: &mut [f32],
    acc: &mut [f64],
) {
    attend_group::<8, 16, true, 1, 16>(queries, rows, cache, tiles, g, scale, scores, acc)
}

/// `LANES` keys scored at a time from the tiles, `CHUNK` values summed at a time per head,
/// `FUSED`: whether `p·v + acc` is one fused multiply-add (only where the CPU has FMA:
/// elsewhere `mul_add` is a slow library call).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_group<
    const LANES: usize,
    const CHUNK: usize,
    const FUSED: bool,
    const HEADS: usize,
    const KEY_BLOCK: usize,
>(
    queries: &[f32],
    rows: &[bool],
    cache: &KvCache,
    tiles: Option<&KeyTiles>,
    g: usize,
    scale: f32,
    scores: &mut [f32],
    acc: &mut [f64],
) {
    let (d, keys) = (cache.shape.head_dim, cache.len);
    if keys == 0 || rows.is_empty() {
        return;
    }
    let positions = rows.len() / keys;
    let heads = queries.len() / (positions * d);
    match tiles {
        Some(tiles) => scores_from_tiles::<LANES>(queries, rows, heads, tiles, g, scale, scores),
        None => {
            let query_rows = rows
                .chunks_exact(keys)
                .flat_map(|row| (0..heads).map(move |_| row));
            let per_head = queries.chunks_exact(d).zip(scores.chunks_exact_mut(keys));
            for ((query, scores), row) in per_head.zip(query_rows) {
                for ((s, &visible), j) in scores.iter_mut().zip(row).zip(0..) {
                    *s = if visible {
                        dot(query, cache.key(g, j)) * scale
                    } else {
                        f32::NEG_INFINITY
                    };
                }
            }
        }
    }
    for scores in scores.chunks_exact_mut(keys) {
        softmax_in_place(scores);
    }
    // The keys after the last one any position sees weigh 0 for every head (the future, in a
    // prefill); a position's keys that only a later position sees weigh 0 too, and are skipped
    // as every key of weight 0 is, so each head's sum is the same as on its own.
    let seen = rows
        .chunks_exact(keys)
        .filter_map(|row| row.iter().rposition(|&v| v))
        .max()
        .map_or(0, |last| last + 1);
    weighted_values::<CHUNK, FUSED, HEADS, KEY_BLOCK>(scores, seen, cache, g, acc);
}

/// Each head's scores of the keys its position's row of `rows` lets it see (-∞ for the
/// others), `LANES` keys at a time, every position's and head's before the next keys (so a
/// tile is read from memory once for them all); keys that a position may not see at all (the
/// future, in a prefill) skipped.
#[inline(always)]
fn scores_from_tiles<const LANES: usize>(
    queries: &[f32],
    rows: &[bool],
    heads: usize,
    tiles: &KeyTiles,
    g: usize,
    scale: f32,
    scores: &mut [f32],
) {
    const { assert!(KEYS.is_multiple_of(LANES)) };
    let d = tiles.head_dim;
    let keys = scores.len() / (queries.len() / d).max(1);
    scores.fill(f32::NEG_INFINITY);
    for first in (0..keys).step_by(LANES) {
        let tile = tiles.tile(g, first / KEYS);
        let queries = queries.chunks_exact(heads * d);
        let scores = scores.chunks_exact_mut(heads * keys);
        for ((row, queries), scores) in rows.chunks_exact(keys).zip(queries).zip(scores) {
            let seen = &row[first..(first + LANES).min(keys)];
            if !seen.contains(&true) {
                continue;
            }
            for (query, scores) in queries.chunks_exact(d).zip(scores.chunks_exact_mut(keys)) {
                let dots = dot_lanes::<LANES>(query, tile, first % KEYS);
                for ((s, &visible), d) in scores[first..].iter_mut().zip(seen).zip(dots) {
                    if visible {
                        *s = d * scale;
                    }
                }
            }
        }
    }
}

/// [`dot`] of the query with `LANES` keys side by side (keys `lane..lane + LANES` of a tile):
/// for each key the same products and additions, in the same order.
#[inline(always)]
fn dot_lanes<const LANES: usize>(query: &[f32], tile: &[f32], lane: usize) -> [f32; LANES] {
    let (rows, _) = tile.as_chunks::<KEYS>(); // (head_dim, KEYS)
    let keys =
        |e: usize| -> &[f32; LANES] { rows[e][lane..lane + LANES].try_into().expect("LANES keys") };
    let full = query.len() / 8 * 8;
    let mut sums = [[0.0f32; LANES]; 8];
    for c in (0..full).step_by(8) {
        for (k, sum) in sums.iter_mut().enumerate() {
            let (q, keys) = (query[c + k], keys(c + k));
            for l in 0..LANES {
                sum[l] += q * keys[l];
            }
        }
    }
    // `Iterator::sum` of the eight partial sums, and of the tail's products: folds from -0.0.
    let mut total = [-0.0f32; LANES];
    for sum in &sums {
        for l in 0..LANES {
            total[l] += sum[l];
        }
    }
    let mut tail = [-0.0f32; LANES];
    for (e, &q) in query.iter().enumerate().skip(full) {
        let keys = keys(e);
        for l in 0..LANES {
            tail[l] += q * keys[l];
        }
    }
    for l in 0..LANES {
        total[l] += tail[l];
    }
    total
}

/// `a + p·v` in f64 (`v` an f32 widened), fused or not: the same result (see the module
/// note). (A function, not a closure: a closure the compiler does not inline loses the
/// caller's instruction set, and `mul_add` becomes a library call.)
#[inline(always)]
fn add_product<const FUSED: bool>(a: &mut f64, p: f64, v: f64) {
    *a = if FUSED { p.mul_add(v, *a) } else { *a + p * v };
}

/// For each head, `acc += Σ_j p_j · v_j` in f64 over the first `seen` keys, key by key in order,
/// for each element. The keys go in blocks of `KEY_BLOCK`, whose values are widened to f64
/// once for all the heads, which then take turns over the block, `HEADS` at a time (each
/// element's values, loaded once, serve them all), and the elements `CHUNK` at a time, the
/// heads' sums held in registers across the block. Each element's sum is the same sequence of
/// additions; a key of weight 0 (masked, or the future of a prefill's earlier positions) is
/// skipped by one head alone, and adds `0·v` where heads go in twos, which leaves a sum as it
/// was, bit for bit (a sum that starts at +0 never becomes -0, and values are finite).
///
/// Two heads at a time with blocks of 8 keys (16 KiB of values at 256 elements, half of a
/// core's L1) made a 420-token prompt's attention with Gemma 3's heads 10% faster on an AMD
/// EPYC (AVX-512, `attention_speed`: 11.15 → 10.0 ms; four heads ran out of registers), but
/// 8% slower in Chromium there (`wasm_speed`'s `attention` and `attention_decode`), whose
/// 128-bit kernel keeps one head and blocks of 16 (as does AVX2, not measured).
#[inline(always)]
fn weighted_values<
    const CHUNK: usize,
    const FUSED: bool,
    const HEADS: usize,
    const KEY_BLOCK: usize,
>(
    probs: &[f32],
    seen: usize,
    cache: &KvCache,
    g: usize,
    acc: &mut [f64],
) {
    const { assert!(HEADS == 1 || HEADS == 2) };
    let d = cache.shape.head_dim;
    let heads = acc.len() / d;
    let keys = probs.len() / heads.max(1);
    // The heads that go in twos, and the one left over.
    let paired = if HEADS == 2 { heads / 2 * 2 } else { 0 };
    let (acc_pairs, acc_rest) = acc.split_at_mut(paired * d);
    let (probs_pairs, probs_rest) = probs.split_at(paired * keys);
    let mut values = vec![0.0f64; KEY_BLOCK * d]; // (KEY_BLOCK, head_dim)
    for first in (0..seen).step_by(KEY_BLOCK) {
        let block = first..(first + KEY_BLOCK).min(seen);
        for (j, wide) in block.clone().zip(values.chunks_exact_mut(d)) {
            for (w, &v) in wide.iter_mut().zip(cache.value(g, j)) {
                *w = v as f64;
            }
        }
        let pairs = probs_pairs
            .chunks_exact(2 * keys)
            .zip(acc_pairs.chunks_exact_mut(2 * d));
        for (probs, acc) in pairs {
            let (first_probs, second_probs) = probs.split_at(keys);
            let probs = [&first_probs[block.clone()], &second_probs[block.clone()]];
            two_heads::<CHUNK, FUSED>(probs, acc.split_at_mut(d), &values[..block.len() * d]);
        }
        let full = d / CHUNK * CHUNK;
        for (probs, acc) in probs_rest
            .chunks_exact(keys)
            .zip(acc_rest.chunks_exact_mut(d))
        {
            let probs = &probs[block.clone()];
            for start in (0..full).step_by(CHUNK) {
                let sums: &mut [f64; CHUNK] = (&mut acc[start..start + CHUNK])
                    .try_into()
                    .expect("CHUNK sums");
                let mut held = *sums;
                for (&p, wide) in probs.iter().zip(values.chunks_exact(d)) {
                    if p > 0.0 {
                        for (a, &v) in held.iter_mut().zip(&wide[start..start + CHUNK]) {
                            add_product::<FUSED>(a, p as f64, v);
                        }
                    }
                }
                *sums = held;
            }
            // The last elements, if the head size is no multiple of CHUNK.
            for (&p, wide) in probs.iter().zip(values.chunks_exact(d)) {
                if p > 0.0 {
                    for (a, &v) in acc[full..].iter_mut().zip(&wide[full..]) {
                        add_product::<FUSED>(a, p as f64, v);
                    }
                }
            }
        }
    }
}

/// `acc.0 += Σ_k probs[0][k] · values[k]` and `acc.1 += Σ_k probs[1][k] · values[k]`, over a
/// block of keys' values (`(keys, head_dim)`, widened): `CHUNK` elements at a time, each
/// element's values loaded once for the two heads, then the last elements.
#[inline(always)]
fn two_heads<const CHUNK: usize, const FUSED: bool>(
    probs: [&[f32]; 2],
    acc: (&mut [f64], &mut [f64]),
    values: &[f64],
) {
    let mut acc = [acc.0, acc.1];
    let d = acc[0].len();
    let full = d / CHUNK * CHUNK;
    for start in (0..full).step_by(CHUNK) {
        let mut held: [[f64; CHUNK]; 2] =
            std::array::from_fn(|h| acc[h][start..start + CHUNK].try_into().expect("CHUNK sums"));
        for (k, wide) in values.chunks_exact(d).enumerate() {
            let wide: &[f64; CHUNK] = wide[start..start + CHUNK].try_into().expect("CHUNK");
            for (held, probs) in held.iter_mut().zip(probs) {
                let p = probs[k] as f64;
                for (a, &v) in held.iter_mut().zip(wide) {
                    add_product::<FUSED>(a, p, v);
                }
            }
        }
        for (acc, held) in acc.iter_mut().zip(&held) {
            acc[start..start + CHUNK].copy_from_slice(held);
        }
    }
    for (acc, probs) in acc.into_iter().zip(probs) {
        for (&p, wide) in probs.iter().zip(values.chunks_exact(d)) {
            for (a, &v) in acc[full..].iter_mut().zip(&wide[full..]) {
                add_product::<FUSED>(a, p as f64, v);
            }
        }
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
    let max = row
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| float::larger(m, v));
    if max == f32::NEG_INFINITY {
        row.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    // exp(-∞) is 0 for the masked keys. One loop of exps alone, which the compiler vectorizes.
    for v in row.iter_mut() {
        *v = float::exp(*v - max);
    }
    let sum = row.iter().fold(0.0f64, |sum, &v| sum + v as f64);
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
}
