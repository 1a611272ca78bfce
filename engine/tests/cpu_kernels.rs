//! The CPU kernels, natively (AVX2 / VNNI where the CPU has them) and in Chromium (wasm
//! simd128, the browser's CPU tier): every SIMD kernel equals the plain-Rust one, and the
//! quantized matmul equals f32 math on the dequantized weights up to the 8-bit activations.

use engine::backend::{AttentionShape, Mask};
use engine::cpu::attention::{attend, KvCache};
use engine::cpu::quant::{
    fast_dot, matmul, matmul_many_exact, scalar_dot, Q16Activations, QMatrix,
};
use engine::gguf::blocks;
use engine::gguf::{GgmlType, GgufEvent, GgufStream, GgufWriter, Limits, MetadataValue};
use engine::testing::{check_close, SeededRng};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A test that runs natively and in the browser.
macro_rules! dual_test {
    ($name:ident, $body:block) => {
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    };
}

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

dual_test!(
    simd_dot_products_equal_the_scalar_ones_and_matmul_matches_f32,
    {
        let mut rng = SeededRng::new(3);
        for ty in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
            // Odd row counts, and token counts that leave a remainder after the four-token kernel.
            for (rows, cols, tokens) in [(37, 96, 1), (129, 576, 3), (5, 32, 7), (19, 64, 9)] {
                let wf = rng.vec_f32(rows * cols, 1.0);
                let data = match ty {
                    GgmlType::Q4_1 => blocks::quantize_q4_1(&wf),
                    GgmlType::Q4_0 => blocks::quantize_q4_0(&wf),
                    _ => blocks::quantize_q8_0(&wf),
                };
                let w = QMatrix::new(ty, rows, cols, data).unwrap();
                let x = rng.vec_f32(tokens * cols, 2.0);
                let acts = Q16Activations::quantize(&x, cols);
                for r in 0..rows {
                    for t in 0..tokens {
                        let s = scalar_dot(ty, w.row(r), &acts, t);
                        let f = fast_dot(ty, w.row(r), &acts, t);
                        assert!(
                            (s - f).abs() <= 1e-4 * (1.0 + s.abs()),
                            "{ty} row {r} token {t}: scalar {s} vs SIMD {f}"
                        );
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
                let want = reference_matmul(&x, tokens, &w);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                check_close(
                    &format!("{ty} {rows}x{cols} t={tokens}"),
                    &batched,
                    &want,
                    0.01 * scale,
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

// The SIMD kernels convert the f16 scales themselves (wasm has no instruction for it): every
// kind of finite half must come out exact, tiny subnormal and negative ones included.
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
    let x = rng.vec_f32(64, 1.5);
    let acts = Q16Activations::quantize(&x, 64);
    for &d in &halves {
        for &m in &halves {
            for ty in [GgmlType::Q8_0, GgmlType::Q4_1] {
                let mut row = Vec::new();
                for _ in 0..2 {
                    row.extend(d.to_le_bytes());
                    if ty == GgmlType::Q4_1 {
                        row.extend(m.to_le_bytes());
                    }
                    let n_quants = if ty == GgmlType::Q4_1 { 16 } else { 32 };
                    row.extend((0..n_quants).map(|_| (rng.next_u64() % 256) as u8));
                }
                let s = scalar_dot(ty, &row, &acts, 0);
                let f = fast_dot(ty, &row, &acts, 0);
                // Relative to the size of the terms, which may cancel: a wrong conversion is
                // off by far more (a factor of 2 or more, or a sign).
                let x_size: f32 = x.iter().map(|v| v.abs()).sum();
                let value = |h: u16| half::f16::from_bits(h).to_f32().abs();
                let size = x_size * (value(d) * 127.0 + value(m));
                assert!(
                    (s - f).abs() <= 1e-5 * size,
                    "{ty} d={d:#06x} m={m:#06x}: scalar {s} vs SIMD {f}"
                );
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
