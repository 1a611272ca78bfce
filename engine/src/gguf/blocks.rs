//! ggml's block formats, dequantized to f32 (ggml `ggml-quants.c`, `dequantize_row_*`).
//!
//! The reference for every quantized kernel: the CPU dot products and the WGSL kernels are both
//! tested against these.

use super::GgmlType;
use half::f16;

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// bfloat16: the top half of an f32.
fn bf16_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([bytes[at], bytes[at + 1]]) as u32) << 16)
}

/// Dequantizes `bytes` (a whole number of blocks of `ty`) into `out` (one f32 per weight).
/// Panics if the lengths disagree: callers size both from the same validated tensor info.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let block_len = ty.block_len() as usize;
    let block_bytes = ty.block_bytes() as usize;
    assert_eq!(bytes.len() / block_bytes * block_len, out.len());
    for (block, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_len))
    {
        match ty {
            GgmlType::F32 => y[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            GgmlType::F16 => y[0] = f16_at(block, 0),
            GgmlType::BF16 => y[0] = bf16_at(block, 0),
            GgmlType::Q4_0 => q4_0(block, y),
            GgmlType::Q4_1 => q4_1(block, y),
            GgmlType::Q5_0 => q5_0(block, y),
            GgmlType::Q5_1 => q5_1(block, y),
            GgmlType::Q8_0 => q8_0(block, y),
            GgmlType::Q4K => q4_k(block, y),
            GgmlType::Q5K => q5_k(block, y),
            GgmlType::Q6K => q6_k(block, y),
        }
    }
}

/// Convenience: a freshly allocated f32 copy.
pub fn dequantize_to_vec(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / ty.block_bytes() as usize * ty.block_len() as usize;
    let mut out = vec![0.0; n];
    dequantize(ty, bytes, &mut out);
    out
}

/// Q4_0: d (f16), qs[16]; weight j = (low nibble of qs[j] - 8)·d, weight j+16 = high nibble.
fn q4_0(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    for j in 0..16 {
        let q = block[2 + j];
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: d, m (f16), qs[16]; weight = nibble·d + m, same nibble order as Q4_0.
fn q4_1(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    for j in 0..16 {
        let q = block[4 + j];
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// Q5_0: d (f16), qh (32 high bits, little-endian u32), qs[16]; weight j = (5-bit q - 16)·d,
/// the low nibbles as in Q4_0 and bit j of qh (bit j + 16 for weight j + 16) on top.
fn q5_0(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    for j in 0..16 {
        let q = block[6 + j];
        let lo = (q & 0x0F) as u32 | ((qh >> j) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        y[j] = (lo as i32 - 16) as f32 * d;
        y[j + 16] = (hi as i32 - 16) as f32 * d;
    }
}

/// Q5_1: d, m (f16), qh (u32), qs[16]; weight = 5-bit q·d + m, bits laid out as in Q5_0.
fn q5_1(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    for j in 0..16 {
        let q = block[8 + j];
        let lo = (q & 0x0F) as u32 | ((qh >> j) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        y[j] = lo as f32 * d + m;
        y[j + 16] = hi as f32 * d + m;
    }
}

/// Q8_0: d (f16), qs[32] (i8); weight = q·d.
fn q8_0(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    for j in 0..32 {
        y[j] = block[2 + j] as i8 as f32 * d;
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K block (ggml `get_scale_min_k4`).
fn scale_min_k4(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Q4_K: d, dmin (f16), scales[12], qs[128]; 8 sub-blocks of 32 with 6-bit scales and mins.
fn q4_k(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let scales = &block[4..16];
    let qs = &block[16..144];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let out = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0F) as f32 - min1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - min2;
        }
    }
}

/// Q5_K: d, dmin (f16), scales[12], qh[32], qs[128]; Q4_K's layout with a fifth bit per weight
/// in qh (bit 2c of qh[l] for weight l of chunk c's low nibbles, bit 2c + 1 for its high ones).
fn q5_k(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let scales = &block[4..16];
    let qh = &block[16..48];
    let qs = &block[48..176];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let out = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let lo = (q[l] & 0x0F) as u32 | (((qh[l] >> (2 * chunk)) & 1) as u32) << 4;
            let hi = (q[l] >> 4) as u32 | (((qh[l] >> (2 * chunk + 1)) & 1) as u32) << 4;
            out[l] = d1 * lo as f32 - min1;
            out[l + 32] = d2 * hi as f32 - min2;
        }
    }
}

/// Q6_K: ql[128], qh[64], scales[16] (i8), d (f16); 16 sub-blocks of 16 with 8-bit scales.
fn q6_k(block: &[u8], y: &mut [f32]) {
    let d = f16_at(block, 208);
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &block[192 + 8 * half..192 + 8 * half + 8];
        let out = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Quantizes f32 values to Q8_0 blocks the way ggml does (`quantize_row_q8_0_ref`): used by
/// tests and by the vision models' exporter.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for j in 0..32 {
            let v = block.get(j).copied().unwrap_or(0.0);
            out.push((v * id).round() as i8 as u8);
        }
    }
    out
}

/// Quantizes f32 values to Q4_1 blocks like ggml (`quantize_row_q4_1_ref`); for tests.
pub fn quantize_q4_1(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 20);
    for block in values.chunks(32) {
        let min = block.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let max = block.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        for j in 0..16 {
            let lo = (((block[j] - min) * id + 0.5) as u8).min(15);
            let hi = (((block[j + 16] - min) * id + 0.5) as u8).min(15);
            out.push(lo | (hi << 4));
        }
    }
    out
}

/// Quantizes f32 values to Q4_0 blocks like ggml (`quantize_row_q4_0_ref`); for tests.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 18);
    for block in values.chunks(32) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in block {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        for j in 0..16 {
            let lo = ((block[j] * id + 8.5) as u8).min(15);
            let hi = ((block[j + 16] * id + 8.5) as u8).min(15);
            out.push(lo | (hi << 4));
        }
    }
    out
}

/// Quantizes f32 values (a whole number of blocks) to `ty` with the quantizers below, for tests
/// and benchmarks of every type. F32, F16 and BF16 round each value (BF16 to nearest even).
pub fn quantize(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::Q4_0 => quantize_q4_0(values),
        GgmlType::Q4_1 => quantize_q4_1(values),
        GgmlType::Q5_0 => quantize_q5_0(values),
        GgmlType::Q5_1 => quantize_q5_1(values),
        GgmlType::Q8_0 => quantize_q8_0(values),
        GgmlType::Q4K => quantize_k_min(values, 15),
        GgmlType::Q5K => quantize_k_min(values, 31),
        GgmlType::Q6K => quantize_q6_k(values),
    }
}

/// The 5-bit values of a block of 32 as ggml packs them: low nibbles as in Q4_0, bit 4 of
/// weight j in bit j of a little-endian u32.
fn pack_5bit(q: &[u8; 32], out: &mut Vec<u8>) {
    let qh = q
        .iter()
        .enumerate()
        .fold(0u32, |qh, (j, &v)| qh | (((v >> 4) & 1) as u32) << j);
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..16).map(|j| (q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4));
}

/// Quantizes to Q5_0 like ggml (`quantize_row_q5_0_ref`); for tests.
pub fn quantize_q5_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 22);
    for block in values.chunks_exact(32) {
        let max = block
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        let q = std::array::from_fn(|j| ((block[j] * id + 16.5) as i8).min(31) as u8);
        pack_5bit(&q, &mut out);
    }
    out
}

/// Quantizes to Q5_1 like ggml (`quantize_row_q5_1_ref`); for tests.
pub fn quantize_q5_1(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 24);
    for block in values.chunks_exact(32) {
        let min = block.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let max = block.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        let q = std::array::from_fn(|j| (((block[j] - min) * id + 0.5) as u8).min(31));
        pack_5bit(&q, &mut out);
    }
    out
}

/// Quantizes to Q4_K (`levels` 15) or Q5_K (31), simply: each sub-block of 32 gets the scale
/// and min of its own range, then both are rounded to 6 bits against the block's largest.
/// ggml searches for better scales (`make_qkx2_quants`); the layout is the same, which is
/// what tests of the kernels need.
fn quantize_k_min(values: &[f32], levels: u8) -> Vec<u8> {
    let five = levels == 31;
    let mut out = Vec::with_capacity(values.len() / 256 * if five { 176 } else { 144 });
    for block in values.chunks_exact(256) {
        let ranges: Vec<(f32, f32)> = block
            .chunks_exact(32)
            .map(|s| {
                let min = s.iter().fold(0f32, |m, &v| m.min(v));
                let max = s.iter().fold(0f32, |m, &v| m.max(v));
                ((max - min) / levels as f32, -min)
            })
            .collect();
        let d = ranges.iter().fold(0f32, |m, r| m.max(r.0)) / 63.0;
        let dmin = ranges.iter().fold(0f32, |m, r| m.max(r.1)) / 63.0;
        let (d, dmin) = (f16::from_f32(d), f16::from_f32(dmin));
        let six = |v: f32, unit: f32| {
            if unit > 0.0 {
                (v / unit).round().min(63.0) as u8
            } else {
                0
            }
        };
        let mut scales = [0u8; 12];
        let mut q = [0u8; 256];
        for (j, &(scale, min)) in ranges.iter().enumerate() {
            let (ls, lm) = (six(scale, d.to_f32()), six(min, dmin.to_f32()));
            if j < 4 {
                scales[j] = ls;
                scales[j + 4] = lm;
            } else {
                scales[j + 4] = (ls & 0x0F) | (lm & 0x0F) << 4;
                scales[j - 4] |= (ls >> 4) << 6;
                scales[j] |= (lm >> 4) << 6;
            }
            let (step, offset) = (d.to_f32() * ls as f32, dmin.to_f32() * lm as f32);
            for l in 0..32 {
                let v = if step > 0.0 {
                    ((block[32 * j + l] + offset) / step).round()
                } else {
                    0.0
                };
                q[32 * j + l] = v.clamp(0.0, levels as f32) as u8;
            }
        }
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&dmin.to_le_bytes());
        out.extend_from_slice(&scales);
        if five {
            // Bit 2c of qh[l]: weight l of chunk c's first sub-block; bit 2c + 1: its second.
            out.extend(
                (0..32).map(|l| (0..8).fold(0u8, |h, s| h | ((q[32 * s + l] >> 4) & 1) << s)),
            );
        }
        for c in 0..4 {
            out.extend((0..32).map(|l| (q[64 * c + l] & 0x0F) | (q[64 * c + 32 + l] & 0x0F) << 4));
        }
    }
    out
}

/// Quantizes to Q6_K like ggml's reference in its choice of scales (each sub-block of 16 from
/// its largest magnitude, the 8-bit scales against the block's largest); for tests.
fn quantize_q6_k(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 256 * 210);
    for block in values.chunks_exact(256) {
        let scales: Vec<f32> = block
            .chunks_exact(16)
            .map(|s| {
                s.iter()
                    .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
                    / -32.0
            })
            .collect();
        let max_scale = scales
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = f16::from_f32(if max_scale != 0.0 {
            max_scale / -128.0
        } else {
            0.0
        });
        let sc: Vec<i8> = scales
            .iter()
            .map(|&s| {
                if d.to_f32() != 0.0 {
                    (s / d.to_f32()).round().clamp(-128.0, 127.0) as i8
                } else {
                    0
                }
            })
            .collect();
        let q: Vec<u8> = (0..256)
            .map(|i| {
                let step = d.to_f32() * sc[i / 16] as f32;
                let v = if step != 0.0 {
                    (block[i] / step).round()
                } else {
                    0.0
                };
                (v.clamp(-32.0, 31.0) as i32 + 32) as u8
            })
            .collect();
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for half in 0..2 {
            let q = &q[128 * half..];
            for l in 0..32 {
                ql[64 * half + l] = (q[l] & 0x0F) | (q[l + 64] & 0x0F) << 4;
                ql[64 * half + l + 32] = (q[l + 32] & 0x0F) | (q[l + 96] & 0x0F) << 4;
                qh[32 * half + l] = (q[l] >> 4)
                    | (q[l + 32] >> 4) << 2
                    | (q[l + 64] >> 4) << 4
                    | (q[l + 96] >> 4) << 6;
            }
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_close, SeededRng};

    #[test]
    fn quantize_then_dequantize_is_close() {
        let mut rng = SeededRng::new(1);
        let x = rng.vec_f32(32 * 7, 2.0);
        for (ty, bytes, tol) in [
            (GgmlType::Q8_0, quantize_q8_0(&x), 0.01),
            (GgmlType::Q4_1, quantize_q4_1(&x), 0.15),
            (GgmlType::Q4_0, quantize_q4_0(&x), 0.3),
        ] {
            let y = dequantize_to_vec(ty, &bytes);
            check_close(ty.name(), &y, &x, tol, 0.0).unwrap();
        }
    }

    #[test]
    fn every_quantizer_round_trips_closely() {
        let mut rng = SeededRng::new(2);
        let x = rng.vec_f32(256 * 3, 1.0);
        // Tolerances: half a step of each type's grid for values in [-1, 1] (a whole step for
        // Q5_0, whose grid of -16..15 clips the largest value of one sign), with room for the
        // K-quants' 6-bit scales.
        for (ty, tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 1e-3),
            (GgmlType::BF16, 4e-3),
            (GgmlType::Q5_0, 0.07),
            (GgmlType::Q5_1, 0.04),
            (GgmlType::Q4K, 0.12),
            (GgmlType::Q5K, 0.07),
            (GgmlType::Q6K, 0.04),
        ] {
            let bytes = quantize(ty, &x);
            assert_eq!(bytes.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
            check_close(ty.name(), &dequantize_to_vec(ty, &bytes), &x, tol, 0.0).unwrap();
        }
    }

    #[test]
    fn q5_known_blocks() {
        // Q5_0: d = 0.5; qh = 0xAAAA_5555 sets the fifth bit of the even weights below 16 and
        // of the odd ones above; nibbles j (low) and 15 - j (high).
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend(0xAAAA_5555u32.to_le_bytes());
        block.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let y = dequantize_to_vec(GgmlType::Q5_0, &block);
        for j in 0..16 {
            let lo = j as f32 + if j % 2 == 0 { 16.0 } else { 0.0 };
            let hi = (15 - j) as f32 + if j % 2 == 1 { 16.0 } else { 0.0 };
            assert_eq!(y[j], (lo - 16.0) * 0.5, "Q5_0 weight {j}");
            assert_eq!(y[j + 16], (hi - 16.0) * 0.5, "Q5_0 weight {}", j + 16);
        }
        // Q5_1: d = 0.25, m = -1; fifth bits on weights 0 and 31 only; low nibbles 0, high 15.
        let mut block = f16::from_f32(0.25).to_le_bytes().to_vec();
        block.extend(f16::from_f32(-1.0).to_le_bytes());
        block.extend(0x8000_0001u32.to_le_bytes());
        block.extend([0xF0u8; 16]);
        let y = dequantize_to_vec(GgmlType::Q5_1, &block);
        let mut want = vec![-1.0; 16];
        want.extend([2.75; 16]);
        want[0] = 3.0; // 16·0.25 - 1
        want[31] = 6.75; // 31·0.25 - 1
        assert_eq!(y, want);
        // Q5_K: d = 1, dmin = 0.5, every scale 1 and min 3 (both scale layouts); qh[l] = 1 << (l % 8)
        // sets the fifth bit of weight l of sub-block l % 8; nibbles 1 (low) and 2 (high).
        let mut block = vec![0u8; 176];
        block[0..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..4 {
            block[4 + j] = 1;
            block[8 + j] = 3;
            block[12 + j] = 1 | (3 << 4);
        }
        for l in 0..32 {
            block[16 + l] = 1 << (l % 8);
        }
        block[48..].fill(0x21);
        let y = dequantize_to_vec(GgmlType::Q5K, &block);
        for s in 0..8 {
            for l in 0..32 {
                let nibble = if s % 2 == 0 { 1.0 } else { 2.0 };
                let high = if l % 8 == s { 16.0 } else { 0.0 };
                assert_eq!(
                    y[32 * s + l],
                    nibble + high - 1.5,
                    "Q5_K sub-block {s} weight {l}"
                );
            }
        }
    }

    #[test]
    fn q4_k_and_q6_k_known_blocks() {
        // One Q4_K block: d = 1, dmin = 0.5, all scales 1 and mins 2 (j < 4 layout for the
        // first four sub-blocks, the packed layout for the rest), nibbles 0..15 repeating.
        let mut block = vec![0u8; 144];
        block[0..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..4 {
            block[4 + j] = 1; // scale of sub-block j
            block[8 + j] = 2; // min of sub-block j
        }
        for j in 4..8 {
            block[8 + j] = 1 | (2 << 4); // low bits of scale and min of sub-block j
        }
        for (l, q) in block[16..].iter_mut().enumerate() {
            *q = (l % 16) as u8 | (((l + 1) % 16) as u8) << 4;
        }
        let y = dequantize_to_vec(GgmlType::Q4K, &block);
        for chunk in 0..4 {
            for l in 0..32 {
                let qs_index = 32 * chunk + l;
                assert_eq!(y[64 * chunk + l], (qs_index % 16) as f32 - 1.0);
                assert_eq!(y[64 * chunk + 32 + l], ((qs_index + 1) % 16) as f32 - 1.0);
            }
        }
        // One Q6_K block: d = 0.5, scales 2, all 6-bit values 33 → weight (33 - 32)·2·0.5 = 1.
        let mut block = vec![0u8; 210];
        for q in &mut block[..128] {
            *q = 1 | (1 << 4); // low nibbles of value 33 = 0b10_0001
        }
        for q in &mut block[128..192] {
            *q = 0b10_10_10_10; // high bits 2 for all four
        }
        for s in &mut block[192..208] {
            *s = 2;
        }
        block[208..210].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        let y = dequantize_to_vec(GgmlType::Q6K, &block);
        assert!(y.iter().all(|&v| v == 1.0), "{y:?}");
    }
}
