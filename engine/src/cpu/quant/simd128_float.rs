//! wasm SIMD kernels for float weights (F32, F16, BF16) against f32 activations: the browser's
//! CPU tier. Eight weights at a time widen to two f32x4 (F16 with integer operations, wasm
//! having no conversion instruction; BF16 with a shift) and are multiplied into two chains of
//! four lanes per token. Generic over the number of tokens (one for decode, four for prefill,
//! where each weight vector serves four tokens) with the same order for each token.

use super::simd128::HALF_BITS;
use std::arch::wasm32::*;

const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// Four halves (sign-extended into i32 lanes) as f32: sign, exponent and mantissa shifted
/// into an f32's places and rescaled by 2¹¹², as `simd128::f16_at` does one at a time. Exact
/// for every finite half, subnormals included.
#[inline(always)]
fn halves_to_f32(h: v128) -> v128 {
    f32x4_mul(
        v128_and(i32x4_shl(h, 13), u32x4_splat(HALF_BITS)),
        f32x4_splat(f32::from_bits(0x7780_0000)),
    )
}

/// Weights `i..i + 8` of a row of `KIND` as two f32x4.
#[inline(always)]
unsafe fn load8<const KIND: u8>(row: *const u8, i: usize) -> [v128; 2] {
    match KIND {
        F32 => {
            let p = row.add(4 * i) as *const v128;
            [v128_load(p), v128_load(p.add(1))]
        }
        F16 => {
            let h = v128_load(row.add(2 * i) as *const v128);
            [
                halves_to_f32(i32x4_extend_low_i16x8(h)),
                halves_to_f32(i32x4_extend_high_i16x8(h)),
            ]
        }
        _ => {
            let h = v128_load(row.add(2 * i) as *const v128);
            [
                u32x4_shl(u32x4_extend_low_u16x8(h), 16),
                u32x4_shl(u32x4_extend_high_u16x8(h), 16),
            ]
        }
    }
}

/// Weight `i` of a row of `KIND`.
#[inline(always)]
unsafe fn load1<const KIND: u8>(row: *const u8, i: usize) -> f32 {
    match KIND {
        F32 => (row.add(4 * i) as *const f32).read_unaligned(),
        F16 => half::f16::from_bits((row.add(2 * i) as *const u16).read_unaligned()).to_f32(),
        _ => f32::from_bits(((row.add(2 * i) as *const u16).read_unaligned() as u32) << 16),
    }
}

#[inline(always)]
unsafe fn dot<const T: usize, const KIND: u8>(row: &[u8], x: [&[f32]; T]) -> [f32; T] {
    let width = if KIND == F32 { 4 } else { 2 };
    let n = x.iter().fold(row.len() / width, |n, x| n.min(x.len()));
    let w = row.as_ptr();
    let mut acc = [[f32x4_splat(0.0); 2]; T];
    let full = n / 8 * 8;
    let mut i = 0;
    while i < full {
        let weights = load8::<KIND>(w, i);
        for t in 0..T {
            let xs = x[t].as_ptr().add(i) as *const v128;
            acc[t][0] = f32x4_add(acc[t][0], f32x4_mul(weights[0], v128_load(xs)));
            acc[t][1] = f32x4_add(acc[t][1], f32x4_mul(weights[1], v128_load(xs.add(1))));
        }
        i += 8;
    }
    std::array::from_fn(|t| {
        let s = f32x4_add(acc[t][0], acc[t][1]);
        let tail: f32 = (full..n).map(|i| load1::<KIND>(w, i) * x[t][i]).sum();
        (f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s))
            + (f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s))
            + tail
    })
}

// SAFETY (all below): `dot` reads weights and activations below `n`, the length of the
// shortest of the row (4 or 2 bytes per weight) and the activation rows.
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    unsafe { dot::<1, F32>(row, [x])[0] }
}

pub fn dot4_f32(row: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
    unsafe { dot::<4, F32>(row, x) }
}

pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    unsafe { dot::<1, F16>(row, [x])[0] }
}

pub fn dot4_f16(row: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
    unsafe { dot::<4, F16>(row, x) }
}

pub fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    unsafe { dot::<1, BF16>(row, [x])[0] }
}

pub fn dot4_bf16(row: &[u8], x: [&[f32]; 4]) -> [f32; 4] {
    unsafe { dot::<4, BF16>(row, x) }
}
