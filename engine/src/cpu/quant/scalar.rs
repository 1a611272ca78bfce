//! The plain-Rust kernels: what runs where no SIMD kernel does, and the reference every SIMD
//! kernel is tested against.

use super::{f16_le, k_scales, ActivationRow};

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
            sum += ((block[2 + j] & 0x0F) as i32 - 8) * qx[j] as i32;
            sum += ((block[2 + j] >> 4) as i32 - 8) * qx[j + 16] as i32;
        }
        total += d * x.info[i].scale * sum as f32;
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

/// Q5_0's and Q5_1's 5-bit value of weight `j` (0..32): its nibble and bit `j` of `qh`.
fn five_bit(qs: &[u8], qh: u32, j: usize) -> i32 {
    let nibble = if j < 16 {
        qs[j] & 0x0F
    } else {
        qs[j - 16] >> 4
    };
    nibble as i32 | (((qh >> j) & 1) << 4) as i32
}

/// Σ (q - offset)·qₓ over a Q5 block's 32 weights.
fn q5_sum(qs: &[u8], qh: u32, offset: i32, qx: &[i16]) -> i32 {
    (0..32)
        .map(|j| (five_bit(qs, qh, j) - offset) * qx[j] as i32)
        .sum()
}

pub fn dot_q5_0(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let mut total = 0.0;
    for (i, block) in row.chunks_exact(22).enumerate() {
        let d = f16_le(block, 0);
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let sum = q5_sum(&block[6..22], qh, 16, &x.qs[i * 32..i * 32 + 32]);
        total += d * x.info[i].scale * sum as f32;
    }
    total
}

pub fn dot_q5_1(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let mut total = 0.0;
    for (i, block) in row.chunks_exact(24).enumerate() {
        let (d, m) = (f16_le(block, 0), f16_le(block, 2));
        let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
        let sum = q5_sum(&block[8..24], qh, 0, &x.qs[i * 32..i * 32 + 32]);
        let info = x.info[i];
        total += d * info.scale * sum as f32 + m * info.sum;
    }
    total
}

/// Q4_K (`FIVE` false, 144 bytes) and Q5_K (176 bytes): sub-block `j` of super-block `s` is
/// activation block 8s + j; its weights are `d·sc[j]·q - dmin·m[j]`, so its dot product is
/// `d·sc[j]·dₓ·Σ q·qₓ - dmin·m[j]·Σ x`.
fn dot_k<const FIVE: bool>(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let (bytes, qs_at) = if FIVE { (176, 48) } else { (144, 16) };
    let mut total = 0.0;
    for (s, block) in row.chunks_exact(bytes).enumerate() {
        let (d, dmin) = (f16_le(block, 0), f16_le(block, 2));
        let (sc, mn) = k_scales(block[4..16].try_into().unwrap());
        for j in 0..8 {
            // Chunk j / 2 of 32 bytes: low nibbles for even sub-blocks, high ones for odd.
            let q = &block[qs_at + 32 * (j / 2)..][..32];
            let i = 8 * s + j;
            let qx = &x.qs[32 * i..32 * i + 32];
            let sum: i32 = (0..32)
                .map(|l| {
                    let mut v = (q[l] >> (4 * (j % 2))) & 0x0F;
                    if FIVE {
                        v |= ((block[16 + l] >> j) & 1) << 4;
                    }
                    v as i32 * qx[l] as i32
                })
                .sum();
            let info = x.info[i];
            total += d * sc[j] as f32 * info.scale * sum as f32 - dmin * mn[j] as f32 * info.sum;
        }
    }
    total
}

pub fn dot_q4_k(row: &[u8], x: ActivationRow<'_>) -> f32 {
    dot_k::<false>(row, x)
}

pub fn dot_q5_k(row: &[u8], x: ActivationRow<'_>) -> f32 {
    dot_k::<true>(row, x)
}

/// Q6_K: activation block 8s + 4h + k holds weights 32k..32k+32 of half h of super-block s,
/// two sub-blocks of 16 with their own 8-bit scales: `d·dₓ·Σ sc·(q-32)·qₓ`. The sum is exact
/// in i64 (in i32 it could overflow: 32 terms of up to 32·128·32767).
pub fn dot_q6_k(row: &[u8], x: ActivationRow<'_>) -> f32 {
    let mut total = 0.0;
    for (s, block) in row.chunks_exact(210).enumerate() {
        let d = f16_le(block, 208);
        for h in 0..2 {
            let (ql, qh) = (
                &block[64 * h..64 * h + 64],
                &block[128 + 32 * h..160 + 32 * h],
            );
            for k in 0..4 {
                let i = 8 * s + 4 * h + k;
                let qx = &x.qs[32 * i..32 * i + 32];
                let sum: i64 = (0..32)
                    .map(|l| {
                        let low = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                        let q = (low | ((qh[l] >> (2 * k)) & 3) << 4) as i64 - 32;
                        let sc = block[192 + 8 * h + 2 * k + l / 16] as i8 as i64;
                        sc * q * qx[l] as i64
                    })
                    .sum();
                total += d * x.info[i].scale * sum as f32;
            }
        }
    }
    total
}

/// F32, F16 and BF16 rows against f32 activations, in eight running sums (the order of
/// `super::dot_f32`).
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    dot_float(row, 4, x, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    dot_float(row, 2, x, |b| f16_le(b, 0))
}

pub fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    dot_float(row, 2, x, |b| {
        f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
    })
}

fn dot_float(row: &[u8], width: usize, x: &[f32], value: impl Fn(&[u8]) -> f32) -> f32 {
    let n = x.len().min(row.len() / width);
    let full = n / 8 * 8;
    let mut lanes = [0.0f32; 8];
    for c in (0..full).step_by(8) {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane += value(&row[(c + i) * width..]) * x[c + i];
        }
    }
    let tail: f32 = (full..n).map(|c| value(&row[c * width..]) * x[c]).sum();
    lanes.iter().sum::<f32>() + tail
}
