//! wasm SIMD kernels for the blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): what the browser's
//! CPU tier runs. Weights widen to 16-bit lanes and `i32x4.dot_i16x8` multiplies them with the
//! 16-bit activations. The helpers here serve the K-quant kernels (`simd128_k.rs`) too.
//!
//! Shaped like the AVX2 kernels, because V8 turns each wasm instruction into about one x86
//! instruction and the kernel is bound by their count: a block's i32 sums are scaled in
//! float lanes (two chains, one horizontal sum per row, not per block), the f16 scales
//! convert with four integer operations instead of `half`'s branching fallback, and the
//! loop reads through pointers after one length check.

use super::ActivationRow;
use std::arch::wasm32::*;

/// An f16's value: its exponent and mantissa shifted into an f32's places, rescaled by
/// 2¹¹² (the difference of the two exponent biases), sign restored. Exact for every finite
/// half, subnormals included; scales in a model file are finite.
#[inline(always)]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned() as u32;
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// Σ w·a over 32 pairs, `w` as four vectors of eight 16-bit weights: four i32 lanes.
#[inline(always)]
pub(super) unsafe fn dot32(w: [v128; 4], a: *const i16) -> v128 {
    let a = a as *const v128;
    let s = i32x4_add(
        i32x4_dot_i16x8(w[0], v128_load(a)),
        i32x4_dot_i16x8(w[1], v128_load(a.add(1))),
    );
    i32x4_add(
        s,
        i32x4_add(
            i32x4_dot_i16x8(w[2], v128_load(a.add(2))),
            i32x4_dot_i16x8(w[3], v128_load(a.add(3))),
        ),
    )
}

/// 16 bytes of nibbles as 32 16-bit weights: low nibbles (weights 0..15), then high.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> [v128; 4] {
    let q = v128_load(p as *const v128);
    let lo = v128_and(q, u8x16_splat(0x0F));
    let hi = u8x16_shr(q, 4);
    [
        u16x8_extend_low_u8x16(lo),
        u16x8_extend_high_u8x16(lo),
        u16x8_extend_low_u8x16(hi),
        u16x8_extend_high_u8x16(hi),
    ]
}

/// 32 signed bytes as 32 16-bit weights.
#[inline(always)]
unsafe fn bytes(p: *const u8) -> [v128; 4] {
    let lo = v128_load(p as *const v128);
    let hi = v128_load(p.add(16) as *const v128);
    [
        i16x8_extend_low_i8x16(lo),
        i16x8_extend_high_i8x16(lo),
        i16x8_extend_low_i8x16(hi),
        i16x8_extend_high_i8x16(hi),
    ]
}

/// Σ over `n` blocks of `scale(i)·(i32 lanes of block i)` plus `extra(i)`, in two chains
/// (even and odd blocks) so that a block need not wait for the previous one's sum.
#[inline(always)]
unsafe fn two_chains(n: usize, mut block: impl FnMut(usize) -> (v128, f32, f32)) -> f32 {
    let scaled = |(sums, scale, add): (v128, f32, f32)| {
        (
            f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(scale)),
            add,
        )
    };
    // Unrolled by hand: indexing the chains by `i & 1` kept them in memory, not registers.
    let (mut even, mut odd) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let (mut even_extra, mut odd_extra) = (0.0f32, 0.0f32);
    let mut i = 0;
    while i + 2 <= n {
        let (v, add) = scaled(block(i));
        even = f32x4_add(even, v);
        even_extra += add;
        let (v, add) = scaled(block(i + 1));
        odd = f32x4_add(odd, v);
        odd_extra += add;
        i += 2;
    }
    if i < n {
        let (v, add) = scaled(block(i));
        even = f32x4_add(even, v);
        even_extra += add;
    }
    finish([even, odd], [even_extra, odd_extra])
}

/// The two chains' lanes and extras summed, in one fixed order.
#[inline(always)]
pub(super) fn finish(acc: [v128; 2], extra: [f32; 2]) -> f32 {
    let s = f32x4_add(acc[0], acc[1]);
    (f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s))
        + (f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s))
        + (extra[0] + extra[1])
}

// SAFETY (the kernels below): `n` is at most the blocks in `row` (20, 18 or 34 bytes each)
// and in each activation row (32 values and one `BlockInfo` each): every read is inside.

pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let n = x.info.len().min(row.len() / 20).min(x.qs.len() / 32);
    let (w, q) = (row.as_ptr(), x.qs.as_ptr());
    unsafe {
        two_chains(n, |i| {
            let b = w.add(i * 20);
            let info = x.info.get_unchecked(i);
            (
                dot32(nibbles(b.add(4)), q.add(i * 32)),
                f16_at(b) * info.scale,
                f16_at(b.add(2)) * info.sum,
            )
        })
    }
}

/// One row against four tokens (prefill): the block's weights and scales are unpacked
/// once. Each token's sums follow [`two_chains`]'s order, so it equals [`dot_q4_1`] to the bit.
pub fn dot4_q4_1(row: &[u8], x: [ActivationRow<'_>; 4]) -> [f32; 4] {
    let mut n = row.len() / 20;
    for t in &x {
        n = n.min(t.info.len()).min(t.qs.len() / 32);
    }
    let w = row.as_ptr();
    let (mut even, mut odd) = ([f32x4_splat(0.0); 4], [f32x4_splat(0.0); 4]);
    let (mut even_extra, mut odd_extra) = ([0.0f32; 4], [0.0f32; 4]);
    let mut i = 0;
    unsafe {
        while i + 2 <= n {
            block4(w, &x, i, &mut even, &mut even_extra);
            block4(w, &x, i + 1, &mut odd, &mut odd_extra);
            i += 2;
        }
        if i < n {
            block4(w, &x, i, &mut even, &mut even_extra);
        }
    }
    [0, 1, 2, 3].map(|t| finish([even[t], odd[t]], [even_extra[t], odd_extra[t]]))
}

/// Q4_1 block `i` of the row at `w` into one chain of each of four tokens. The chains are
/// passed in (not indexed by `i & 1`) and this is inlined, so that they stay in registers.
#[inline(always)]
unsafe fn block4(
    w: *const u8,
    x: &[ActivationRow<'_>; 4],
    i: usize,
    acc: &mut [v128; 4],
    extra: &mut [f32; 4],
) {
    let b = w.add(i * 20);
    let (d, m) = (f16_at(b), f16_at(b.add(2)));
    let weights = nibbles(b.add(4));
    for t in 0..4 {
        let info = x[t].info.get_unchecked(i);
        let sums = dot32(weights, x[t].qs.as_ptr().add(i * 32));
        let scaled = f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(d * info.scale));
        acc[t] = f32x4_add(acc[t], scaled);
        extra[t] += m * info.sum;
    }
}

pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let n = x.info.len().min(row.len() / 18).min(x.qs.len() / 32);
    let (w, q) = (row.as_ptr(), x.qs.as_ptr());
    unsafe {
        two_chains(n, |i| {
            let b = w.add(i * 18);
            let info = x.info.get_unchecked(i);
            // Σ (q-8)·qₓ = Σ q·qₓ - 8·Σ qₓ, the correction folded into lane 0.
            let sums = i32x4_sub(
                dot32(nibbles(b.add(2)), q.add(i * 32)),
                i32x4(8 * info.q_sum, 0, 0, 0),
            );
            (sums, f16_at(b) * info.scale, 0.0)
        })
    }
}

pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let n = x.info.len().min(row.len() / 34).min(x.qs.len() / 32);
    let (w, q) = (row.as_ptr(), x.qs.as_ptr());
    unsafe {
        two_chains(n, |i| {
            let b = w.add(i * 34);
            let info = x.info.get_unchecked(i);
            (
                dot32(bytes(b.add(2)), q.add(i * 32)),
                f16_at(b) * info.scale,
                0.0,
            )
        })
    }
}

/// Per-token sums of a row's blocks in two chains (even and odd activation blocks), in
/// [`two_chains`]'s arithmetic and [`finish`]'s order, the same for one token as for four.
/// Blocks reach it through [`by_pairs`], so each chain is a constant and stays in a register.
pub(super) struct Chains<const T: usize> {
    acc: [[v128; 2]; T],
    extra: [[f32; 2]; T],
}

impl<const T: usize> Chains<T> {
    #[inline(always)]
    pub(super) fn new() -> Self {
        Chains {
            acc: [[f32x4_splat(0.0); 2]; T],
            extra: [[0.0; 2]; T],
        }
    }

    /// Adds `scale · sums` (four lanes of i32) and `extra` to chain `chain` of token `t`.
    #[inline(always)]
    pub(super) fn add(&mut self, t: usize, chain: usize, sums: v128, scale: f32, extra: f32) {
        let scaled = f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(scale));
        self.acc[t][chain] = f32x4_add(self.acc[t][chain], scaled);
        self.extra[t][chain] += extra;
    }

    #[inline(always)]
    pub(super) fn finish(&self) -> [f32; T] {
        std::array::from_fn(|t| finish(self.acc[t], self.extra[t]))
    }
}

/// Calls `block(i, chain)` for blocks 0..n, even blocks on chain 0 and odd ones on chain 1.
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
fn whole_blocks<const T: usize>(
    row: &[u8],
    block_bytes: usize,
    x: &[ActivationRow<'_>; T],
) -> usize {
    x.iter().fold(row.len() / block_bytes, |n, t| {
        n.min(t.info.len()).min(t.qs.len() / 32)
    })
}

/// A Q5_0 / Q5_1 block's 32 5-bit weights as 16-bit lanes: the nibbles as Q4_0's, and bit j
/// of `qh` (the u32 at `qh`) adds 16 to weight j.
#[inline(always)]
unsafe fn five_bits(qh: *const u8, nibbles: *const u8) -> [v128; 4] {
    let qh = u32x4_splat((qh as *const u32).read_unaligned());
    // Byte j of each half gets the byte of qh that holds its bit, then tests bit j % 8.
    let bit = u64x2_splat(0x8040_2010_0804_0201);
    let sixteen = u8x16_splat(16);
    let high = |spread: v128| v128_and(i8x16_eq(v128_and(spread, bit), bit), sixteen);
    let low_high = high(u8x16_shuffle::<
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
    >(qh, qh));
    let high_high = high(u8x16_shuffle::<
        2,
        2,
        2,
        2,
        2,
        2,
        2,
        2,
        3,
        3,
        3,
        3,
        3,
        3,
        3,
        3,
    >(qh, qh));
    let q = v128_load(nibbles as *const v128);
    let lo = v128_or(v128_and(q, u8x16_splat(0x0F)), low_high);
    let hi = v128_or(u8x16_shr(q, 4), high_high);
    [
        u16x8_extend_low_u8x16(lo),
        u16x8_extend_high_u8x16(lo),
        u16x8_extend_low_u8x16(hi),
        u16x8_extend_high_u8x16(hi),
    ]
}

/// Q5_0 (22 bytes: d, qh, qs): Σ (q-16)·qₓ = Σ q·qₓ - 16·Σ qₓ, the correction in lane 0.
#[inline(always)]
unsafe fn q5_0<const T: usize>(row: &[u8], x: [ActivationRow<'_>; T]) -> [f32; T] {
    let n = whole_blocks(row, 22, &x);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 22);
        let d = f16_at(b);
        let weights = five_bits(b.add(2), b.add(6));
        for (t, x) in x.iter().enumerate() {
            let info = x.info.get_unchecked(i);
            let sums = i32x4_sub(
                dot32(weights, x.qs.as_ptr().add(i * 32)),
                i32x4(16 * info.q_sum, 0, 0, 0),
            );
            chains.add(t, chain, sums, d * info.scale, 0.0);
        }
    });
    chains.finish()
}

/// Q5_1 (24 bytes: d, m, qh, qs).
#[inline(always)]
unsafe fn q5_1<const T: usize>(row: &[u8], x: [ActivationRow<'_>; T]) -> [f32; T] {
    let n = whole_blocks(row, 24, &x);
    let mut chains = Chains::<T>::new();
    by_pairs(n, |i, chain| {
        let b = row.as_ptr().add(i * 24);
        let (d, m) = (f16_at(b), f16_at(b.add(2)));
        let weights = five_bits(b.add(4), b.add(8));
        for (t, x) in x.iter().enumerate() {
            let info = x.info.get_unchecked(i);
            let sums = dot32(weights, x.qs.as_ptr().add(i * 32));
            chains.add(t, chain, sums, d * info.scale, m * info.sum);
        }
    });
    chains.finish()
}

// SAFETY (the four below): `whole_blocks` bounds the blocks by `row` (22 or 24 bytes each)
// and by every activation row; every load stays inside its block.
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
