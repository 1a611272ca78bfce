//! AVX2 + FMA + F16C kernels for the blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), chosen at run
//! time when the CPU has them. Weights widen to 16-bit lanes and `vpmaddwd` multiplies them
//! with the 16-bit activations. The helpers here serve the K-quant kernels (`avx2_k.rs`) too.

use super::ActivationRow;
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[inline(always)]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The f16 at `p` as f32 (a 32-bit load: a 16-bit insert would merge into a live
/// register and chain every block to the previous one).
#[inline(always)]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        (p as *const i32).read_unaligned(),
    )))
}

/// Σ w·a over 32 pairs: `w_lo`, `w_hi` 16-bit weights 0..15 and 16..31, `a` the block's
/// 32 activations. Returns 8 lanes of i32 partial sums.
#[inline(always)]
pub(super) unsafe fn dot_i16(w_lo: __m256i, w_hi: __m256i, a: *const i16) -> __m256i {
    let a_lo = _mm256_loadu_si256(a as *const __m256i);
    let a_hi = _mm256_loadu_si256(a.add(16) as *const __m256i);
    _mm256_add_epi32(_mm256_madd_epi16(w_lo, a_lo), _mm256_madd_epi16(w_hi, a_hi))
}

/// 16 bytes of nibbles as two vectors of 16-bit weights (low nibbles, then high).
#[inline(always)]
unsafe fn nibbles_i16(p: *const u8) -> (__m256i, __m256i) {
    let q = _mm_loadu_si128(p as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi))
}

/// Σ over blocks of `scale(i)·(i32 sum of block i)` plus `extra(i)`, two chains (even and
/// odd blocks) so each block need not wait for the previous one's FMA. The four-token
/// kernel sums in this same order, so prefill and decode agree to the bit.
#[inline(always)]
unsafe fn two_chains(n: usize, mut block: impl FnMut(usize) -> (__m256i, f32, f32)) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut extra = [0.0f32; 2];
    for i in 0..n {
        let (sums, scale, add) = block(i);
        acc[i & 1] = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), acc[i & 1]);
        extra[i & 1] += add;
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) + (extra[0] + extra[1])
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let n = x.info.len().min(row.len() / 20);
    let (w, q) = (row.as_ptr(), x.qs.as_ptr());
    two_chains(n, |i| {
        let b = w.add(i * 20);
        let (lo, hi) = nibbles_i16(b.add(4));
        let info = x.info.get_unchecked(i);
        (
            dot_i16(lo, hi, q.add(i * 32)),
            f16_at(b) * info.scale,
            f16_at(b.add(2)) * info.sum,
        )
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_four(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
    let n = x[0].info.len().min(row.len() / 20);
    let w = row.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut extra = [[0.0f32; 2]; 4];
    for i in 0..n {
        let b = w.add(i * 20);
        let (d, m) = (f16_at(b), f16_at(b.add(2)));
        let (lo, hi) = nibbles_i16(b.add(4));
        for t in 0..4 {
            let info = x[t].info.get_unchecked(i);
            let sums = dot_i16(lo, hi, x[t].qs.as_ptr().add(i * 32));
            let chain = i & 1;
            acc[t][chain] = _mm256_fmadd_ps(
                _mm256_set1_ps(d * info.scale),
                _mm256_cvtepi32_ps(sums),
                acc[t][chain],
            );
            extra[t][chain] += m * info.sum;
        }
    }
    let mut out = [0.0; 4];
    for t in 0..4 {
        out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + (extra[t][0] + extra[t][1]);
    }
    out
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let n = x.info.len().min(row.len() / 18);
    let (w, q) = (row.as_ptr(), x.qs.as_ptr());
    two_chains(n, |i| {
        let b = w.add(i * 18);
        let (lo, hi) = nibbles_i16(b.add(2));
        let info = x.info.get_unchecked(i);
        // Σ (q-8)·qₓ = Σ q·qₓ - 8·Σ qₓ, the correction folded into the i32 lanes' total.
        let sums = _mm256_sub_epi32(
            dot_i16(lo, hi, q.add(i * 32)),
            _mm256_setr_epi32(8 * info.q_sum, 0, 0, 0, 0, 0, 0, 0),
        );
        (sums, f16_at(b) * info.scale, 0.0)
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let n = x.info.len().min(row.len() / 34);
    let (w, q) = (row.as_ptr(), x.qs.as_ptr());
    two_chains(n, |i| {
        let b = w.add(i * 34);
        let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(2) as *const __m128i));
        let hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(18) as *const __m128i));
        let info = x.info.get_unchecked(i);
        (dot_i16(lo, hi, q.add(i * 32)), f16_at(b) * info.scale, 0.0)
    })
}

/// Per-token sums of a row's blocks in two chains (even and odd activation blocks), kept in
/// the same order for one token as for four, so prefill and decode agree to the bit.
pub(super) struct Chains<const T: usize> {
    acc: [[__m256; 2]; T],
    extra: [[f32; 2]; T],
}

impl<const T: usize> Chains<T> {
    #[inline(always)]
    pub(super) unsafe fn new() -> Self {
        Chains {
            acc: [[_mm256_setzero_ps(); 2]; T],
            extra: [[0.0; 2]; T],
        }
    }

    /// Adds `scale · sums` (8 lanes of i32) and `extra` to chain `chain` of token `t`.
    #[inline(always)]
    pub(super) unsafe fn add(
        &mut self,
        t: usize,
        chain: usize,
        sums: __m256i,
        scale: f32,
        extra: f32,
    ) {
        let acc = &mut self.acc[t][chain];
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), *acc);
        self.extra[t][chain] += extra;
    }

    #[inline(always)]
    pub(super) unsafe fn finish(&self) -> [f32; T] {
        std::array::from_fn(|t| {
            hsum(_mm256_add_ps(self.acc[t][0], self.acc[t][1]))
                + (self.extra[t][0] + self.extra[t][1])
        })
    }
}

/// Calls `block(i, chain)` for blocks 0..n, even blocks on chain 0 and odd ones on chain 1
/// (unrolled by two, so the chains are constants once inlined).
#[inline(always)]
pub(super) fn by_pairs(n: usize, mut block: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i + 2 <= n {
        block(i, 0);
        block(i + 1, 1);
        i += 2;
    }
    if i < n {
        block(i, 0);
    }
}

/// The number of blocks of `block_bytes` that `row` and every activation row hold.
#[inline(always)]
pub(super) fn whole_blocks<const T: usize>(
    row: &[u8],
    block_bytes: usize,
    x: &[ActivationRow<'_>; T],
) -> usize {
    x.iter().fold(row.len() / block_bytes, |n, t| {
        n.min(t.info.len()).min(t.qs.len() / 32)
    })
}

/// A Q5_0 / Q5_1 block's 32 5-bit weights as two vectors of 16-bit lanes (weights 0..15 and
/// 16..31): the nibbles as Q4_0's, and bit j of `qh` (the u32 at `qh`) adds 16 to weight j.
#[inline(always)]
unsafe fn five_bits(qh: *const u8, nibbles: *const u8) -> (__m256i, __m256i) {
    let qh = _mm256_set1_epi32((qh as *const i32).read_unaligned());
    // Byte j gets byte j / 8 of qh (each 128-bit lane holds all four), then its bit j % 8.
    let spread = _mm256_shuffle_epi8(
        qh,
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    let high = _mm256_and_si256(set, _mm256_set1_epi8(16));
    let q = _mm_loadu_si128(nibbles as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let low = _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16(q, 4), mask),
        _mm_and_si128(q, mask),
    );
    let w = _mm256_or_si256(low, high);
    (
        _mm256_cvtepu8_epi16(_mm256_castsi256_si128(w)),
        _mm256_cvtepu8_epi16(_mm256_extracti128_si256(w, 1)),
    )
}

/// Q5_0 (22 bytes: d, qh, qs): Σ (q-16)·qₓ = Σ q·qₓ - 16·Σ qₓ, the correction in lane 0.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0<const T: usize>(row: &[u8], x: [ActivationRow<'_>; T]) -> [f32; T] {
    let n = whole_blocks(row, 22, &x);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 22);
        let d = f16_at(b);
        let (lo, hi) = five_bits(b.add(2), b.add(6));
        for (t, x) in x.iter().enumerate() {
            let info = x.info.get_unchecked(i);
            let sums = _mm256_sub_epi32(
                dot_i16(lo, hi, x.qs.as_ptr().add(i * 32)),
                _mm256_setr_epi32(16 * info.q_sum, 0, 0, 0, 0, 0, 0, 0),
            );
            chains.add(t, chain, sums, d * info.scale, 0.0);
        }
    });
    chains.finish()
}

/// Q5_1 (24 bytes: d, m, qh, qs).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1<const T: usize>(row: &[u8], x: [ActivationRow<'_>; T]) -> [f32; T] {
    let n = whole_blocks(row, 24, &x);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 24);
        let (d, m) = (f16_at(b), f16_at(b.add(2)));
        let (lo, hi) = five_bits(b.add(4), b.add(8));
        for (t, x) in x.iter().enumerate() {
            let info = x.info.get_unchecked(i);
            let sums = dot_i16(lo, hi, x.qs.as_ptr().add(i * 32));
            chains.add(t, chain, sums, d * info.scale, m * info.sum);
        }
    });
    chains.finish()
}

// SAFETY (the four below): selected only when `available()` says the CPU has avx2, fma and
// f16c; reads stay inside `row` (20, 18 or 34 bytes per block; the 4-byte scale loads read
// the scale and the following quant bytes of the same block) and the activation rows
// (32 values and one `BlockInfo` per block).
pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { q4_1(row, x) }
}

pub fn dot4_q4_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
    unsafe { q4_1_four(row, x) }
}

pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { q4_0(row, x) }
}

pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { q8_0(row, x) }
}

// SAFETY (the four below): as above; `whole_blocks` bounds the blocks by `row` (22 or 24
// bytes each) and by every activation row; the 4-byte loads of d and of qh stay in the block.
pub fn dot_q5_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { q5_0(row, [x])[0] }
}

pub fn dot4_q5_0(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
    unsafe { q5_0(row, x) }
}

pub fn dot_q5_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    unsafe { q5_1(row, [x])[0] }
}

pub fn dot4_q5_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
    unsafe { q5_1(row, x) }
}
