//! The CPU twins of the small WGSL kernels, on row-major f32 slices: RMSNorm, LayerNorm /
//! GroupNorm, rotary positions and the activations. The CPU backend runs these; the GPU kernel
//! tests compare against them.

/// `x / sqrt(mean(x²) + eps) * weight` per row, the sum of squares in f64 as ggml does it.
/// The CPU twin of the WebGPU rms_norm kernel.
pub fn rms_norm_rows(data: &mut [f32], weight: &[f32], eps: f32) {
    for row in data.chunks_exact_mut(weight.len()) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / row.len() as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// LayerNorm (one group) or per-head GroupNorm on each row: the CPU twin of the WebGPU
/// group_norm kernel. Mean and variance are taken in two passes over the group.
pub fn group_norm_rows(data: &mut [f32], groups: usize, weight: &[f32], bias: &[f32], eps: f32) {
    let features = weight.len();
    let size = features / groups.max(1);
    for row in data.chunks_exact_mut(features) {
        for (g, group) in row.chunks_exact_mut(size).enumerate() {
            let mean = group.iter().sum::<f32>() / size as f32;
            let var = group.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / size as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for (i, v) in group.iter_mut().enumerate() {
                let f = g * size + i;
                *v = (*v - mean) * inv * weight[f] + bias[f];
            }
        }
    }
}

/// GELU, tanh approximation (candle's `gelu` and the WebGPU kernel's): ½x(1 + tanh y) with
/// y = √(2/π)(x + 0.044715x³), computed as x / (1 + e^(-2y)), the same function: with
/// [`super::float::exp`] it vectorizes, where `tanhf` was a call per element (8% of Gemma 3's
/// prefill, on one thread).
pub fn gelu(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x);
    x / (1.0 + super::float::exp(-2.0 * y))
}

/// `gelu(gate) · up` (GeGLU).
pub fn gelu_mul(gate: f32, up: f32) -> f32 {
    gelu(gate) * up
}

/// `silu(gate) · up`, with silu(g) = g / (1 + e^(-g)) as the WebGPU kernel computes it.
pub fn silu_mul(gate: f32, up: f32) -> f32 {
    gate / (1.0 + super::float::exp(-gate)) * up
}

/// RoPE on interleaved pairs (x[2i], x[2i+1]) of each head, rotated by the angles of
/// [`crate::numerics::rope_angles`]. GGUF stores llama's Q and K rows permuted for exactly this
/// pairing. The CPU twin of the WebGPU rope kernel.
pub fn rope_interleaved(
    data: &mut [f32],
    features: usize,
    head_dim: usize,
    positions: &[u32],
    base: f32,
) {
    rope_rows(data, features, head_dim, positions, base, |i| {
        (2 * i, 2 * i + 1)
    });
}

/// RoPE on the pairs (x[i], x[i + head_dim/2]) of each head (GPT-NeoX's "rotate half", as
/// ggml's NEOX mode), with the same angles as [`rope_interleaved`]. The CPU twin of the WebGPU
/// rope kernel's halves mode.
pub fn rope_halves(
    data: &mut [f32],
    features: usize,
    head_dim: usize,
    positions: &[u32],
    base: f32,
) {
    let half = head_dim / 2;
    rope_rows(data, features, head_dim, positions, base, |i| (i, i + half));
}

/// Rotates pair `pair(i)` of every head of every row by angle `i` of the row's position.
fn rope_rows(
    data: &mut [f32],
    features: usize,
    head_dim: usize,
    positions: &[u32],
    base: f32,
    pair: impl Fn(usize) -> (usize, usize),
) {
    let half = head_dim / 2;
    let angles = crate::numerics::rope_angles(positions, head_dim, base);
    for (row, angles) in data
        .chunks_exact_mut(features)
        .zip(angles.chunks_exact(half))
    {
        for head in row.chunks_exact_mut(head_dim) {
            for (i, [cos, sin]) in angles.iter().enumerate() {
                let (first, second) = pair(i);
                let (a, b) = (head[first], head[second]);
                head[first] = a * cos - b * sin;
                head[second] = a * sin + b * cos;
            }
        }
    }
}

/// Per row, blocks of 32 columns rounded to 8 bits with one scale each (amax / 127, values
/// times 1/scale rounded half away from zero, as ggml's Q8_0 rows); columns whose largest
/// |value| over the rows reaches `keep_outliers_above` stay as they were and take no part in
/// their block's scale. The CPU twin of the WebGPU `activation_quant` kernels.
pub fn quantize_activations_8bit(
    data: &[f32],
    cols: usize,
    keep_outliers_above: Option<f32>,
) -> Vec<f32> {
    let cols = cols.max(1);
    let outlier: Vec<bool> = (0..cols)
        .map(|c| {
            keep_outliers_above.is_some_and(|threshold| {
                let largest = data
                    .iter()
                    .skip(c)
                    .step_by(cols)
                    .fold(0f32, |m, v| m.max(v.abs()));
                largest >= threshold
            })
        })
        .collect();
    let mut out = data.to_vec();
    for row in out.chunks_exact_mut(cols) {
        for (b, block) in row.chunks_mut(32).enumerate() {
            let kept = &outlier[b * 32..b * 32 + block.len()];
            let amax = block
                .iter()
                .zip(kept)
                .filter(|(_, &k)| !k)
                .fold(0f32, |m, (v, _)| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (v, &k) in block.iter_mut().zip(kept) {
                if !k {
                    *v = (*v * id).round() * d;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_round_to_8_bits_per_block_except_outliers() {
        // One row of 34 columns: a block of 32 and a partial block of 2.
        let mut row: Vec<f32> = (0..34).map(|i| i as f32 * 0.1).collect();
        row[5] = 12.7; // the first block's amax: its scale is 0.1, a step of the others
        row[33] = -6.35; // the second block's: scale 0.05, and 3.2 is 64 steps
        let close = |a: f32, b: f32, tolerance: f32| (a - b).abs() <= tolerance;
        let rounded = quantize_activations_8bit(&row, 34, None);
        assert!(close(rounded[5], 12.7, 1e-5));
        assert!(close(rounded[7], 0.7, 1e-5));
        assert!(close(rounded[32], 3.2, 1e-5));
        assert!(close(rounded[33], -6.35, 1e-5));
        // 0.155 is 1.55 steps of 0.1: it becomes 0.2. With 12.7 kept wide, the step is
        // 3.1 / 127 (column 31 is the block's largest), and 0.155 moves by at most half of it.
        row[1] = 0.155;
        let blunt = quantize_activations_8bit(&row, 34, None);
        assert!(close(blunt[1], 0.2, 1e-5), "{}", blunt[1]);
        let kept = quantize_activations_8bit(&row, 34, Some(10.0));
        assert_eq!(kept[5], 12.7);
        assert!(close(kept[1], 0.155, 3.1 / 127.0 / 2.0), "{}", kept[1]);
        assert!(!close(kept[1], 0.2, 0.01));
        // Keeping every column changes nothing.
        assert_eq!(quantize_activations_8bit(&row, 34, Some(0.0)), row);
    }

    #[test]
    fn rope_styles_rotate_their_own_pairs() {
        // head_dim 4, position 1, base 10000: angles 1 and 10000^(-1/2) = 0.01.
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let rotate =
            |a: f32, b: f32, t: f32| (a * t.cos() - b * t.sin(), a * t.sin() + b * t.cos());
        let mut interleaved = x;
        rope_interleaved(&mut interleaved, 4, 4, &[1], 10_000.0);
        let ((a, b), (c, d)) = (rotate(1.0, 2.0, 1.0), rotate(3.0, 4.0, 0.01));
        assert_eq!(interleaved, [a, b, c, d]);
        let mut halves = x;
        rope_halves(&mut halves, 4, 4, &[1], 10_000.0);
        let ((a, c), (b, d)) = (rotate(1.0, 3.0, 1.0), rotate(2.0, 4.0, 0.01));
        assert_eq!(halves, [a, b, c, d]);
    }
}
