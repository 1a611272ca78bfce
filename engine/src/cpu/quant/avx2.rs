//! AVX2 + FMA + F16C kernels for the blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), chosen at run
//! time when the CPU has them. Weights widen to 16-bit lanes and `vpmaddwd` multiplies them
//! with the 16-bit activations. Each kernel is written once for one token (decode) and for a
//! tile of four (prefill: sixteen ymm registers hold two chains of four tokens, the weights
//! and the temporaries, not more). The helpers here serve the K-quant kernels (`avx2_k.rs`) too.

use super::prefetch;
use super::tile::{by_pairs_with_products, steps_of, Tokens};
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

/// 16 bytes of nibbles less `offset` as two vectors of 16-bit weights (low nibbles, then
/// high). Subtracting Q4_0's 8 here, once per block, gives the dot products Σ (q - 8)·qₓ
/// directly, instead of a correction `8·Σ qₓ` for every token.
#[inline(always)]
unsafe fn nibbles_i16(p: *const u8, offset: i8) -> (__m256i, __m256i) {
    let q = _mm_loadu_si128(p as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_sub_epi8(_mm_and_si128(q, mask), _mm_set1_epi8(offset));
    let hi = _mm_sub_epi8(
        _mm_and_si128(_mm_srli_epi16(q, 4), mask),
        _mm_set1_epi8(offset),
    );
    (_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi))
}

/// Per-token sums of a row's blocks in two chains (even and odd activation blocks): for each
/// block, `acc += (scale·dₓ) · (its i32 lanes)` in eight f32 lanes, and the min term `extra +=
/// m·Σx` beside them. The same order for one token as for a tile, so prefill and decode
/// agree to the bit.
pub(super) struct Chains<const T: usize> {
    acc: [[__m256; 2]; T],
    extra: [[f32; T]; 2],
}

impl<const T: usize> Chains<T> {
    #[inline(always)]
    pub(super) unsafe fn new() -> Self {
        Chains {
            acc: [[_mm256_setzero_ps(); 2]; T],
            extra: [[0.0; T]; 2],
        }
    }

    /// Adds `scale · sums` (8 lanes of i32) to chain `chain` of token `t`.
    #[inline(always)]
    pub(super) unsafe fn add(&mut self, t: usize, chain: usize, sums: __m256i, scale: f32) {
        let acc = &mut self.acc[t][chain];
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(sums), *acc);
    }

    /// Adds each token's min term to chain `chain`.
    #[inline(always)]
    pub(super) fn add_extra(&mut self, chain: usize, extra: [f32; T]) {
        for (sum, e) in self.extra[chain].iter_mut().zip(extra) {
            *sum += e;
        }
    }

    /// Each token's total. (A loop, not `array::from_fn`: intrinsics in a closure that the
    /// compiler does not inline became calls, a fifth of Gemma 3's prefill.)
    #[inline(always)]
    pub(super) unsafe fn finish(&self) -> [f32; T] {
        let mut out = [0.0; T];
        for (t, y) in out.iter_mut().enumerate() {
            *y = hsum(_mm256_add_ps(self.acc[t][0], self.acc[t][1]))
                + (self.extra[0][t] + self.extra[1][t]);
        }
        out
    }
}

/// Q4_1 (20 bytes: d, m, qs): `d·dₓ·Σ q·qₓ + m·Σx`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 20);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 20));
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 20);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        prefetch::weights_ahead::<T>(b, 20);
        let (lo, hi) = nibbles_i16(b.add(4), 0);
        for t in 0..T {
            chains.add(t, chain, dot_i16(lo, hi, x.qs(t, i)), steps.get(t));
        }
        chains.add_extra(chain, x.sums_times(i, f16_at(b.add(2))));
    });
    chains.finish()
}

/// Q4_0 (18 bytes: d, qs): `d·dₓ·Σ (q-8)·qₓ`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 18);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 18));
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 18);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        prefetch::weights_ahead::<T>(b, 18);
        let (lo, hi) = nibbles_i16(b.add(2), 8);
        for t in 0..T {
            chains.add(t, chain, dot_i16(lo, hi, x.qs(t, i)), steps.get(t));
        }
    });
    chains.finish()
}

/// Q8_0 (34 bytes: d, qs as i8).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 34);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 34));
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 34);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        prefetch::weights_ahead::<T>(b, 34);
        let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(2) as *const __m128i));
        let hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(18) as *const __m128i));
        for t in 0..T {
            chains.add(t, chain, dot_i16(lo, hi, x.qs(t, i)), steps.get(t));
        }
    });
    chains.finish()
}

/// A Q5_0 / Q5_1 block's 32 5-bit weights as two vectors of 16-bit lanes (weights 0..15 and
/// 16..31), less `offset`: the nibbles as Q4_0's, and bit j of `qh` (the u32 at `qh`) adds 16
/// to weight j.
#[inline(always)]
unsafe fn five_bits(qh: *const u8, nibbles: *const u8, offset: i8) -> (__m256i, __m256i) {
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
    let w = _mm256_sub_epi8(_mm256_or_si256(low, high), _mm256_set1_epi8(offset));
    (
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)),
    )
}

/// Q5_0 (22 bytes: d, qh, qs): `d·dₓ·Σ (q-16)·qₓ`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 22);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 22));
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 22);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        prefetch::weights_ahead::<T>(b, 22);
        let (lo, hi) = five_bits(b.add(2), b.add(6), 16);
        for t in 0..T {
            chains.add(t, chain, dot_i16(lo, hi, x.qs(t, i)), steps.get(t));
        }
    });
    chains.finish()
}

/// Q5_1 (24 bytes: d, m, qh, qs).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = x.blocks().min(row.len() / 24);
    let mut chains = Chains::<T>::new();
    let d_at = |i: usize| f16_at(row.as_ptr().add(i * 24));
    by_pairs_with_products(n, &x, d_at, |i, chain, ahead| {
        let b = row.as_ptr().add(i * 24);
        let mut own = None;
        let steps = steps_of(ahead, &mut own, &x, i, || f16_at(b));
        prefetch::weights_ahead::<T>(b, 24);
        let (lo, hi) = five_bits(b.add(4), b.add(8), 0);
        for t in 0..T {
            chains.add(t, chain, dot_i16(lo, hi, x.qs(t, i)), steps.get(t));
        }
        chains.add_extra(chain, x.sums_times(i, f16_at(b.add(2))));
    });
    chains.finish()
}

// SAFETY (the entry points below): selected only when `available()` says the CPU has avx2, fma and f16c;
// each kernel bounds its blocks by `row` (20, 18, 34, 22 or 24 bytes each) and by every
// token's activations (`Tokens::blocks`); every load stays inside its block (the 4-byte
// loads of d and of qh read bytes of the same block).
super::tile::entry_points! {
    q4_1 => dot_q4_1, tile4_q4_1;
    q4_0 => dot_q4_0, tile4_q4_0;
    q8_0 => dot_q8_0, tile4_q8_0;
    q5_0 => dot_q5_0, tile4_q5_0;
    q5_1 => dot_q5_1, tile4_q5_1;
}
