//! wasm SIMD kernels for the K-quants (Q4_K, Q5_K, Q6_K): the browser's CPU tier. A
//! super-block of 256 weights spans 8 activation blocks of 32: its chunks of quants are
//! unpacked once, each activation block's part widened to 16-bit lanes for `i32x4.dot_i16x8`,
//! and summed per block in `simd128.rs`'s two chains. Each kernel is generic over where its
//! tokens come from (one for decode, a tile of four for prefill) with the same order for each
//! token.

use super::k_scales;
use super::simd128::{dot32, f16_at, Chains};
use super::tile::{by_pairs, Tokens};
use std::arch::wasm32::*;

/// The super-blocks that `row` and every token's activations hold whole.
#[inline(always)]
fn super_blocks<const T: usize>(row: &[u8], bytes: usize, x: &impl Tokens<T>) -> usize {
    (row.len() / bytes).min(x.blocks() / 8)
}

/// 32 bytes (two vectors) as four vectors of eight 16-bit lanes, zero-extended.
#[inline(always)]
fn widen_u8(v: [v128; 2]) -> [v128; 4] {
    [
        u16x8_extend_low_u8x16(v[0]),
        u16x8_extend_high_u8x16(v[0]),
        u16x8_extend_low_u8x16(v[1]),
        u16x8_extend_high_u8x16(v[1]),
    ]
}

/// Q4_K (`FIVE` false: d, dmin, scales[12], qs[128]) and Q5_K (`FIVE` true: qh[32] before qs):
/// chunk c of qs holds sub-block 2c in its low nibbles and 2c + 1 in its high ones; for Q5_K,
/// bit j of qh[l] is the fifth bit of weight l of sub-block j.
#[inline(always)]
unsafe fn q45_k<const T: usize, const FIVE: bool>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let (bytes, qs_at) = if FIVE { (176, 48) } else { (144, 16) };
    let n = super_blocks(row, bytes, &x);
    let mask = u8x16_splat(0x0F);
    let one = u8x16_splat(1);
    let mut chains = Chains::<T>::new();
    for s in 0..n {
        let b = row.as_ptr().add(s * bytes);
        let (d, dmin) = (f16_at(b), f16_at(b.add(2)));
        let (sc, mn) = k_scales(&*(b.add(4) as *const [u8; 12]));
        // The fifth bits, shifted down one sub-block at a time (16-bit shifts move bits across
        // bytes, but only into bits that the mask with `one` drops).
        let mut qh = if FIVE {
            [0, 1].map(|k| v128_load(b.add(16 + 16 * k) as *const v128))
        } else {
            [u8x16_splat(0); 2]
        };
        let mut fifth = || {
            let bits = qh.map(|h| i16x8_shl(v128_and(h, one), 4));
            qh = qh.map(|h| u16x8_shr(h, 1));
            bits
        };
        for c in 0..4 {
            let q = [0, 1].map(|k| v128_load(b.add(qs_at + 32 * c + 16 * k) as *const v128));
            let mut lo = q.map(|v| v128_and(v, mask));
            let mut hi = q.map(|v| u8x16_shr(v, 4));
            if FIVE {
                let (l, h) = (fifth(), fifth());
                lo = [v128_or(lo[0], l[0]), v128_or(lo[1], l[1])];
                hi = [v128_or(hi[0], h[0]), v128_or(hi[1], h[1])];
            }
            by_pairs(2, |half, chain| {
                let weights = widen_u8(if half == 0 { lo } else { hi });
                let j = 2 * c + half;
                let i = 8 * s + j;
                let (step, min) = (d * sc[j] as f32, dmin * mn[j] as f32);
                let steps = x.scales_times(i, step);
                for t in 0..T {
                    chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
                }
                chains.add_extra(chain, x.sums_times(i, min).map(|m| -m));
            });
        }
    }
    chains.finish()
}

/// Q6_K (ql[128], qh[64], scales[16], d): activation block k of half h takes the low (k < 2)
/// or high nibbles of ql[64h + 32(k % 2)..], two bits of qh[32h..] from bit 2k, and its two
/// sub-blocks' scales, which multiply the 16-bit weights ((q-32)·sc fits in 13 bits).
#[inline(always)]
unsafe fn q6_k<const T: usize>(row: &[u8], x: impl Tokens<T>) -> [f32; T] {
    let n = super_blocks(row, 210, &x);
    let mask = u8x16_splat(0x0F);
    let three = u8x16_splat(3);
    let mut chains = Chains::<T>::new();
    for s in 0..n {
        let b = row.as_ptr().add(s * 210);
        let d = f16_at(b.add(208));
        let scales = b.add(192) as *const i8;
        for h in 0..2 {
            let ql = [0, 1, 2, 3].map(|k| v128_load(b.add(64 * h + 16 * k) as *const v128));
            let mut qh = [0, 1].map(|k| v128_load(b.add(128 + 32 * h + 16 * k) as *const v128));
            by_pairs(4, |k, chain| {
                let sc = scales.add(8 * h + 2 * k);
                let (sc0, sc1) = (i16x8_splat(*sc as i16), i16x8_splat(*sc.add(1) as i16));
                // Bytes 0..15 and 16..31 of the block's 32 weights.
                let q = [0, 1].map(|half| {
                    let l = ql[2 * (k % 2) + half];
                    let nibbles = if k < 2 {
                        v128_and(l, mask)
                    } else {
                        u8x16_shr(l, 4)
                    };
                    let top = i16x8_shl(v128_and(qh[half], three), 4);
                    i8x16_sub(v128_or(nibbles, top), i8x16_splat(32))
                });
                qh = qh.map(|v| u16x8_shr(v, 2));
                let weights = [
                    i16x8_mul(i16x8_extend_low_i8x16(q[0]), sc0),
                    i16x8_mul(i16x8_extend_high_i8x16(q[0]), sc0),
                    i16x8_mul(i16x8_extend_low_i8x16(q[1]), sc1),
                    i16x8_mul(i16x8_extend_high_i8x16(q[1]), sc1),
                ];
                let i = 8 * s + 4 * h + k;
                let steps = x.scales_times(i, d);
                for t in 0..T {
                    chains.add(t, chain, dot32(weights, x.qs(t, i)), steps.get(t));
                }
            });
        }
    }
    chains.finish()
}

// SAFETY (the entry points below): `super_blocks` bounds the loop by the whole super-blocks in `row` (144,
// 176 or 210 bytes) and by the activation rows (8 blocks of 32 values and 8 `BlockInfo`s
// each); every load lies inside its super-block.
super::tile::entry_points! {
    q45_k[false] => dot_q4_k, tile4_q4_k;
    q45_k[true] => dot_q5_k, tile4_q5_k;
    q6_k => dot_q6_k, tile4_q6_k;
}
