//! AVX-512 (F + BW + VL) kernels for the K-quants (Q4_K, Q5_K, Q6_K). A super-block of 256
//! weights spans 8 activation blocks of 32; each block's weights widen to one 512-bit vector
//! of 16-bit lanes and meet its activations in one `vpmaddwd`, summed in `avx512.rs`'s two
//! chains. Written once for one token (decode) and for tiles of four and eight (prefill).

use super::avx2_k::{q45_layout, q6_d, super_blocks, Q6Half};
use super::avx512::{add_block, f16_pair, finish};
use super::k_scales;
use super::prefetch;
use super::tile::{Scaled, Tokens};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Q4_K (`FIVE` false: d, dmin, scales[12], qs[128]) and Q5_K (`FIVE` true: qh[32] before qs):
/// chunk c of qs holds sub-block 2c in its low nibbles and 2c + 1 in its high ones; for Q5_K,
/// bit j of qh[l] is the fifth bit of weight l of sub-block j, so one byte test per sub-block
/// gives the mask of its lanes that get 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn q45_k<const T: usize, const FIVE: bool>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let (bytes, qs_at) = q45_layout(FIVE);
    let n = super_blocks(row, bytes, &x);
    let mask = _mm256_set1_epi8(0x0F);
    let sixteen = _mm512_set1_epi16(16);
    let (mut even, mut odd) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    let (mut even_extra, mut odd_extra) = ([0.0f32; T], [0.0f32; T]);
    let mut first = 0;
    while first < n {
        // A tile's sub-block scales, unpacked ahead of the super-blocks that use them, and
        // their products with each token's dₓ: unpacked in place, they were a chain of scalar
        // work in front of every sub-block's multiply-adds, and a product stored by its own
        // sub-block was read back before the store reached the cache (as in `avx512.rs`'s
        // blocks32). Left uninitialized past `end`. One token computes its super-block's now.
        let end = (first + SUPER_BLOCKS_AHEAD).min(n);
        let mut ahead =
            [const { MaybeUninit::<([Scaled<T>; 8], [f32; 8])>::uninit() }; SUPER_BLOCKS_AHEAD];
        let tile_ahead = if T > 1 { first..end } else { first..first };
        for s in tile_ahead {
            ahead[s - first].write(q45_products(row.as_ptr().add(s * bytes), &x, s));
        }
        for s in first..end {
            let b = row.as_ptr().add(s * bytes);
            prefetch::weights_ahead::<T>(b, bytes);
            // SAFETY: a tile wrote the entries of super-blocks `first..end` above.
            let (products, mins) = if T > 1 {
                ahead[s - first].assume_init_ref()
            } else {
                &*ahead[0].write(q45_products(b, &x, s))
            };
            let qh = _mm256_loadu_si256(b.add(16) as *const __m256i);
            // Sub-block j's 32 weights: its nibbles, and 16 more where bit j of qh says so.
            let weights = |nibbles: __m256i, j: usize| {
                let w = _mm512_cvtepu8_epi16(nibbles);
                if FIVE {
                    let fifth = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(1 << j));
                    _mm512_mask_add_epi16(w, fifth, w, sixteen)
                } else {
                    w
                }
            };
            for c in 0..4 {
                let q = _mm256_loadu_si256(b.add(qs_at + 32 * c) as *const __m256i);
                let (j, i) = (2 * c, 8 * s + 2 * c);
                let lo = weights(_mm256_and_si256(q, mask), j);
                add_block(lo, &x, i, &products[j], &mut even);
                for (e, m) in even_extra.iter_mut().zip(x.sums_times(i, mins[j])) {
                    *e += -m;
                }
                let hi = weights(_mm256_and_si256(_mm256_srli_epi16(q, 4), mask), j + 1);
                add_block(hi, &x, i + 1, &products[j + 1], &mut odd);
                for (e, m) in odd_extra.iter_mut().zip(x.sums_times(i + 1, mins[j + 1])) {
                    *e += -m;
                }
            }
        }
        first = end;
    }
    finish(even, odd, even_extra, odd_extra)
}

/// Super-blocks whose scales a tile unpacks at a time.
const SUPER_BLOCKS_AHEAD: usize = 8;

/// Super-block `s`'s (at `b`) eight `d·scale` times each token's dₓ, and its eight
/// `dmin·min`.
#[inline(always)]
unsafe fn q45_products<const T: usize>(
    b: *const u8,
    x: &impl Tokens<T>,
    s: usize,
) -> ([Scaled<T>; 8], [f32; 8]) {
    let (steps, mins) = q45_steps(b);
    let mut products = [const { MaybeUninit::<Scaled<T>>::uninit() }; 8];
    for (j, products) in products.iter_mut().enumerate() {
        products.write(x.scales_times(8 * s + j, steps[j]));
    }
    // SAFETY: all eight written just above.
    (products.map(|p| p.assume_init()), mins)
}

/// A Q4_K/Q5_K super-block's eight `d·scale` and eight `dmin·min`.
#[inline(always)]
unsafe fn q45_steps(b: *const u8) -> ([f32; 8], [f32; 8]) {
    let (d, dmin) = f16_pair(b);
    let (sc, mn) = k_scales(&*(b.add(4) as *const [u8; 12]));
    (sc.map(|s| d * s as f32), mn.map(|m| dmin * m as f32))
}

/// Q6_K (ql[128], qh[64], scales[16], d): each activation block's weights from `avx2_k.rs`'s
/// [`Q6Half`], and its two sub-blocks' scales, which multiply the 16-bit weights ((q-32)·sc
/// fits in 13 bits).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn q6_k<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = super_blocks(row, 210, &x);
    let (mut even, mut odd) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    for s in 0..n {
        let b = row.as_ptr().add(s * 210);
        prefetch::weights_ahead::<T>(b, 210);
        let d = q6_d(b);
        let scales = b.add(192) as *const i8;
        for h in 0..2 {
            let mut half = Q6Half::load(b, h);
            let mut weights = |k: usize| {
                let q = half.next(k);
                let sc = scales.add(8 * h + 2 * k);
                // Lanes 0..15 take the first sub-block's scale, 16..31 the second's.
                let both = _mm512_mask_set1_epi16(
                    _mm512_set1_epi16(*sc as i16),
                    0xFFFF_0000,
                    *sc.add(1) as i16,
                );
                _mm512_mullo_epi16(_mm512_cvtepi8_epi16(q), both)
            };
            for k in [0, 2] {
                let i = 8 * s + 4 * h + k;
                add_block(weights(k), &x, i, &x.scales_times(i, d), &mut even);
                add_block(
                    weights(k + 1),
                    &x,
                    i + 1,
                    &x.scales_times(i + 1, d),
                    &mut odd,
                );
            }
        }
    }
    finish(even, odd, [0.0; T], [0.0; T])
}

// SAFETY (the entry points below): selected only when `avx512::available()`; `super_blocks`
// bounds the loop by the whole super-blocks in `row` (144, 176 or 210 bytes) and by the
// activation rows (8 blocks of 32 values and 8 `BlockInfo`s each); every load lies inside its
// super-block (the 4-byte load of d and dmin reads both; Q4_K's 32 bytes at 16 are its first
// quants, read but unused; Q6_K's d, at the block's end, is read with a 2-byte load).
super::avx512::entry_points! {
    q45_k[false] => dot_q4_k, tile4_q4_k, tile8_q4_k;
    q45_k[true] => dot_q5_k, tile4_q5_k, tile8_q5_k;
    q6_k[] => dot_q6_k, tile4_q6_k, tile8_q6_k;
}
