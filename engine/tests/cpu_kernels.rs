//! The CPU kernels, natively (AVX2 / AVX-512 where the CPU has them) and in Chromium (wasm
//! simd128, the browser's CPU tier), for every weight type: every SIMD kernel equals the
//! plain-Rust one, and the matmul equals f32 math on the dequantized weights up to the 16-bit
//! activations (exactly up to summation order for F16, BF16 and F32).

use engine::backend::{AttentionShape, Mask};
use engine::cpu::attention::{attend, KvCache};
use engine::cpu::quant::{
    every_simd_dot, every_simd_dot_f32, fast_dot, fast_dot_f32, matmul, matmul_many,
    matmul_many_exact, scalar_dot, scalar_dot_f32, takes_f32_activations, Q16Activations, QMatrix,
};
use engine::gguf::blocks;
use engine::gguf::{GgmlType, GgufEvent, GgufStream, GgufWriter, Limits, MetadataValue};
use engine::testing::{check_close, SeededRng};

mod kernel_cases;
use kernel_cases::{dual_test, TYPES};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn reference_matmul(x: &[f32], tokens: usize, w: &QMatrix) -> Vec<f32> {
    let wf = blocks::dequantize_to_vec(w.ty, &w.data);
    let mut y = vec![0.0; tokens * w.rows];
    for t in 0..tokens {
        for r in 0..w.rows {
            y[t * w.rows + r] = (0..w.cols)
                .map(|c| x[t * w.cols + c] * wf[r * w.cols + c])
                .sum();
        }
    }
    y
}

/// (rows, cols, tokens): odd row counts, and token counts that leave a remainder after the
/// four-token kernel; columns whole blocks of `ty` (and, for the float types, not a multiple of
/// the SIMD width).
fn sizes(ty: GgmlType) -> [(usize, usize, usize); 4] {
    match ty.block_len() {
        256 => [(37, 256, 1), (29, 768, 3), (5, 512, 7), (19, 256, 9)],
        32 => [(37, 96, 1), (129, 576, 3), (5, 32, 7), (19, 64, 9)],
        _ => [(37, 96, 1), (29, 77, 3), (5, 3, 7), (19, 200, 9)],
    }
}

dual_test!(
    simd_dot_products_equal_the_scalar_ones_and_matmul_matches_f32,
    {
        let mut rng = SeededRng::new(3);
        for ty in TYPES {
            let float = takes_f32_activations(ty);
            for (rows, cols, tokens) in sizes(ty) {
                let wf = rng.vec_f32(rows * cols, 1.0);
                let w = QMatrix::new(ty, rows, cols, blocks::quantize(ty, &wf)).unwrap();
                let x = rng.vec_f32(tokens * cols, 2.0);
                let acts = (!float).then(|| Q16Activations::quantize(&x, cols));
                // The dispatched kernel and every other this machine has (AVX2 where AVX-512
                // takes precedence, the four-token kernels on their own).
                for r in 0..rows {
                    for t in 0..tokens {
                        let (s, mut simd) = match &acts {
                            Some(acts) => (
                                scalar_dot(ty, w.row(r), acts, t),
                                every_simd_dot(ty, w.row(r), acts, t),
                            ),
                            None => {
                                let x = &x[t * cols..(t + 1) * cols];
                                (
                                    scalar_dot_f32(ty, w.row(r), x),
                                    every_simd_dot_f32(ty, w.row(r), x),
                                )
                            }
                        };
                        let dispatched = match &acts {
                            Some(acts) => fast_dot(ty, w.row(r), acts, t),
                            None => fast_dot_f32(ty, w.row(r), &x[t * cols..(t + 1) * cols]),
                        };
                        simd.push(("dispatched".to_string(), dispatched));
                        for (isa, f) in simd {
                            assert!(
                                (s - f).abs() <= 1e-4 * (1.0 + s.abs()),
                                "{ty} row {r} token {t}: scalar {s} vs {isa} {f}"
                            );
                        }
                    }
                }
                // The multi-token path (prefill) must equal the one-token path (decode) exactly.
                let batched = matmul(&x, tokens, &w);
                for t in 0..tokens {
                    let single = matmul(&x[t * cols..(t + 1) * cols], 1, &w);
                    assert_eq!(
                        &batched[t * rows..(t + 1) * rows],
                        &single[..],
                        "{ty} token {t}"
                    );
                }
                // 16-bit activations are off by up to half a step in 32767 of each block's
                // largest value; f32 activations only by the order of the sums.
                let want = reference_matmul(&x, tokens, &w);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let tol = if float { 1e-5 } else { 0.01 };
                check_close(
                    &format!("{ty} {rows}x{cols} t={tokens}"),
                    &batched,
                    &want,
                    tol * scale,
                    0.0,
                )
                .unwrap();
                // The explorer's f32 path is f32 math, up to summation order.
                let exact = matmul_many_exact(&x, tokens, &[&w]).remove(0);
                check_close(
                    &format!("{ty} {rows}x{cols} t={tokens} exact"),
                    &exact,
                    &want,
                    1e-5 * scale,
                    1e-5,
                )
                .unwrap();
            }
        }
    }
);

// Matrices of several types sharing one input (as q/k/v may): each output is what the matrix
// gives alone, whether or not the activations were quantized for another.
dual_test!(matrices_of_mixed_types_share_one_input, {
    let mut rng = SeededRng::new(4);
    let (cols, tokens) = (512, 5);
    let x = rng.vec_f32(tokens * cols, 1.0);
    let matrices: Vec<QMatrix> = [GgmlType::Q4K, GgmlType::F16, GgmlType::Q6K, GgmlType::Q5_0]
        .iter()
        .map(|&ty| {
            let w = rng.vec_f32(7 * cols, 1.0);
            QMatrix::new(ty, 7, cols, blocks::quantize(ty, &w)).unwrap()
        })
        .collect();
    let refs: Vec<&QMatrix> = matrices.iter().collect();
    let together = matmul_many(&x, tokens, &refs);
    for (m, y) in matrices.iter().zip(&together) {
        assert_eq!(y, &matmul(&x, tokens, m), "{}", m.ty);
    }
});

// The SIMD kernels convert the f16 scales themselves (wasm has no instruction for it): every
// kind of finite half must come out exact, tiny subnormal and negative ones included, in every
// place a block keeps one.
dual_test!(simd_kernels_read_f16_scales_of_every_kind, {
    let halves: [u16; 9] = [
        0x3c00, // 1
        0xbc00, // -1
        0x0001, // smallest subnormal
        0x83ff, // largest subnormal, negative
        0x0400, // smallest normal
        0x7bff, // largest finite
        0x2e66, // 0.1
        0x0000, // 0
        0x8000, // -0
    ];
    let mut rng = SeededRng::new(11);
    let x = rng.vec_f32(256, 1.5);
    let acts = Q16Activations::quantize(&x, 256);
    let x_size: f32 = x.iter().map(|v| v.abs()).sum();
    let value = |h: u16| half::f16::from_bits(h).to_f32().abs();
    // (type, blocks per row, where d is, where the min's scale is, the largest weight per unit
    // of d and of the min's scale): random quants between.
    let layouts = [
        (GgmlType::Q8_0, 2, 0, None, 127.0, 0.0),
        (GgmlType::Q4_1, 2, 0, Some(2), 127.0, 1.0),
        (GgmlType::Q5_0, 2, 0, None, 16.0, 0.0),
        (GgmlType::Q5_1, 2, 0, Some(2), 31.0, 1.0),
        (GgmlType::Q4K, 1, 0, Some(2), 63.0 * 15.0, 63.0),
        (GgmlType::Q5K, 1, 0, Some(2), 63.0 * 31.0, 63.0),
        (GgmlType::Q6K, 1, 208, None, 128.0 * 32.0, 0.0),
    ];
    for &d in &halves {
        for &m in &halves {
            for (ty, n_blocks, d_at, m_at, d_weight, m_weight) in layouts {
                let size = ty.block_bytes() as usize;
                let mut row: Vec<u8> = (0..n_blocks * size)
                    .map(|_| (rng.next_u64() % 256) as u8)
                    .collect();
                for block in row.chunks_exact_mut(size) {
                    block[d_at..d_at + 2].copy_from_slice(&d.to_le_bytes());
                    if let Some(at) = m_at {
                        block[at..at + 2].copy_from_slice(&m.to_le_bytes());
                    }
                }
                let s = scalar_dot(ty, &row, &acts, 0);
                // Relative to the size of the terms, which may cancel: a wrong conversion is
                // off by far more (a factor of 2 or more, or a sign).
                let size = x_size * (value(d) * d_weight + value(m) * m_weight);
                for (isa, f) in every_simd_dot(ty, &row, &acts, 0) {
                    assert!(
                        (s - f).abs() <= 1e-5 * size,
                        "{ty} d={d:#06x} m={m:#06x}: scalar {s} vs {isa} {f}"
                    );
                }
            }
        }
    }
});

dual_test!(attention_rows_are_distributions_that_respect_the_mask, {
    let shape = AttentionShape {
        n_heads: 6,
        n_kv_heads: 2,
        head_dim: 16,
    };
    let mut rng = SeededRng::new(11);
    let t = 5;
    let kv = shape.n_kv_heads * shape.head_dim;
    let mut cache = KvCache::new(shape, 8).unwrap();
    cache.append(&rng.vec_f32(t * kv, 1.0), &rng.vec_f32(t * kv, 1.0), t);
    let q = rng.vec_f32(t * shape.n_heads * shape.head_dim, 1.0);
    // A block mask: token 2 may not see token 1 (as between two members of a set).
    let mut visible = Mask::Causal.to_rows(t, 0);
    visible[2 * t + 1] = false;
    let mask = Mask::Explicit(visible.clone());
    let (_, probs) = attend(&q, t, &cache, &mask, true);
    let probs = probs.unwrap();
    for (row_index, row) in probs.chunks(t).enumerate() {
        let i = row_index % t;
        assert!(
            (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "row {row_index}"
        );
        for (j, p) in row.iter().enumerate() {
            if !visible[i * t + j] {
                assert_eq!(*p, 0.0, "query {i} must not see key {j}");
            }
        }
    }
});

dual_test!(gguf_streams_the_same_in_any_chunking, {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", MetadataValue::String("test".into()));
    w.tensor_f32("a", &[3], &[1.0, 2.0, 3.0]);
    w.tensor(
        "b",
        &[32, 2],
        GgmlType::Q8_0,
        (0..68).map(|i| i as u8).collect(),
    );
    let file = w.to_bytes();
    for chunk in [1usize, 5, 64, file.len()] {
        let mut stream = GgufStream::new(Limits::default(), Some(file.len() as u64));
        let mut names = Vec::new();
        for piece in file.chunks(chunk) {
            for event in stream.push(piece).unwrap() {
                if let GgufEvent::Tensor(t) = event {
                    names.push((t.info.name, t.bytes.len()));
                }
            }
        }
        stream.finish().unwrap();
        assert_eq!(
            names,
            vec![("a".to_string(), 12), ("b".to_string(), 68)],
            "chunk {chunk}"
        );
    }
});

// The activations' 16-bit quantizer (SIMD where the CPU or the browser has it) against plain
// arithmetic written here: each block's scale is max|x| / 32767, its values x · (32767 / max|x|)
// rounded to the nearest (ties to even), its sum the one `Iterator::sum` gives; to the bit, for
// blocks of very different sizes, of zeros of either sign, and beside a block with a NaN.
dual_test!(activations_are_quantized_as_plain_arithmetic_does, {
    let mut rng = SeededRng::new(6);
    let (cols, tokens) = (576, 3);
    let mut x: Vec<f32> = rng
        .vec_f32(tokens * cols, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v * [1.0, 1e-7, 3e5, 2.5][(i / 32) % 4])
        .collect();
    x[..32].fill(-0.0);
    x[32..64].fill(0.0);
    // Ties: with a largest |x| of 32767 the values are not scaled.
    let ties = [
        32767.0, 2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.5, 32766.5, -32766.5,
    ];
    x[96..96 + ties.len()].copy_from_slice(&ties);
    x[5 * 32 + 3] = f32::NAN;
    let q = Q16Activations::quantize(&x, cols);
    for (b, block) in x.chunks_exact(32).enumerate() {
        let info = q.block_info[b];
        let want_sum: f32 = block.iter().sum();
        assert_eq!(info.sum.to_bits(), want_sum.to_bits(), "block {b}: sum");
        if block.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(
            info.scale.to_bits(),
            (amax / 32767.0).to_bits(),
            "block {b}: scale"
        );
        let inverse = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
        let want: Vec<i16> = block
            .iter()
            .map(|v| (v * inverse).round_ties_even() as i16)
            .collect();
        assert_eq!(&q.qs[32 * b..32 * (b + 1)], &want[..], "block {b}: values");
    }
});
