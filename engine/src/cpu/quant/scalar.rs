//! The plain-Rust kernels: what runs where no SIMD kernel does, and the reference every SIMD
//! kernel is tested against.

use super::{f16_le, ActivationRow};

pub fn dot_q4_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let mut total = 0.0;
    for (i, block) in row.chunks_exact(20).enumerate() {
        let (d, m) = (f16_le(block, 0), f16_le(block, 2));
        let qx = &x.qs[i * 32..i * 32 + 32];
        let mut sum = 0i32;
        for j in 0..16 {
            sum += (block[4 + j] & 0x0F) as i32 * qx[j] as i32;
            sum += (block[4 + j] >> 4) as i32 * qx[j + 16] as i32;
        }
        let info = x.info[i];
        total += d * info.scale * sum as f32 + m * info.sum;
    }
    total
}

pub fn dot_q4_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let mut total = 0.0;
    for (i, block) in row.chunks_exact(18).enumerate() {
        let d = f16_le(block, 0);
        let qx = &x.qs[i * 32..i * 32 + 32];
        let mut sum = 0i32;
        for j in 0..16 {
            sum += (block[2 + j] & 0x0F) as i32 * qx[j] as i32;
            sum += (block[2 + j] >> 4) as i32 * qx[j + 16] as i32;
        }
        let info = x.info[i];
        total += d * info.scale * (sum - 8 * info.q_sum) as f32;
    }
    total
}

pub fn dot_q8_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let mut total = 0.0;
    for (i, block) in row.chunks_exact(34).enumerate() {
        let d = f16_le(block, 0);
        let qx = &x.qs[i * 32..i * 32 + 32];
        let sum: i32 = block[2..34]
            .iter()
            .zip(qx)
            .map(|(&w, &a)| w as i8 as i32 * a as i32)
            .sum();
        total += d * x.info[i].scale * sum as f32;
    }
    total
}
