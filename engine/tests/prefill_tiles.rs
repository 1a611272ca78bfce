//! Prefill in tiles of tokens, natively (AVX2 / AVX-512 where the CPU has them) and in Chromium
//! (wasm simd128): every tile kernel gives each token exactly what its instruction set's
//! one-token kernel gives (and the plain-Rust twin up to summation order), and a matmul of many
//! tokens equals the same matmul token by token, to the bit, for every weight type and for
//! token and row counts that leave partial tiles.

use engine::cpu::quant::{
    every_simd_dot, matmul, matmul_many, scalar_dot, takes_f32_activations, Q16Activations, QMatrix,
};
use engine::gguf::blocks;
use engine::gguf::GgmlType;
use engine::testing::SeededRng;

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

const TYPES: [GgmlType; 11] = [
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

/// Columns: two super-blocks for the K-quants, an odd number of blocks (so the two chains end
/// unevenly) for the blocks of 32, and a length that is no multiple of the SIMD width for the
/// float types.
fn cols(ty: GgmlType) -> usize {
    match ty.block_len() {
        256 => 512,
        32 => 224,
        _ => 83,
    }
}

fn matrix(rng: &mut SeededRng, ty: GgmlType, rows: usize, cols: usize) -> QMatrix {
    let w = rng.vec_f32(rows * cols, 1.0);
    QMatrix::new(ty, rows, cols, blocks::quantize(ty, &w)).unwrap()
}

// Token counts below, at and past the tiles of four and eight, with every remainder; row counts
// that no tile or job size divides.
dual_test!(
    matmul_of_many_tokens_equals_one_token_at_a_time_to_the_bit,
    {
        let mut rng = SeededRng::new(19);
        for ty in TYPES {
            let cols = cols(ty);
            for rows in [1, 3, 17, 45] {
                let w = matrix(&mut rng, ty, rows, cols);
                for tokens in [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 23] {
                    let x = rng.vec_f32(tokens * cols, 2.0);
                    let together = matmul(&x, tokens, &w);
                    for t in 0..tokens {
                        let alone = matmul(&x[t * cols..(t + 1) * cols], 1, &w);
                        for (r, (a, b)) in together[t * rows..(t + 1) * rows]
                            .iter()
                            .zip(&alone)
                            .enumerate()
                        {
                            assert!(
                                a.to_bits() == b.to_bits(),
                                "{ty} {rows}x{cols}, {tokens} tokens: token {t} row {r}: \
                             {a} together, {b} alone"
                            );
                        }
                    }
                }
            }
        }
    }
);

// Each tile kernel against the one-token kernel of its own instruction set (exactly: the same
// products in the same order) and against the plain-Rust twin (up to summation order, as the
// one-token kernels are held in cpu_kernels.rs), for every token of an input whose last tiles
// are partial.
dual_test!(every_tile_kernel_equals_its_one_token_kernel, {
    let mut rng = SeededRng::new(23);
    for ty in TYPES.into_iter().filter(|&ty| !takes_f32_activations(ty)) {
        let cols = cols(ty);
        let w = matrix(&mut rng, ty, 5, cols);
        let tokens = 13;
        let x = rng.vec_f32(tokens * cols, 2.0);
        let acts = Q16Activations::quantize(&x, cols);
        for r in 0..w.rows {
            for t in 0..tokens {
                let scalar = scalar_dot(ty, w.row(r), &acts, t);
                let all = every_simd_dot(ty, w.row(r), &acts, t);
                // Every SIMD kernel set (x86 with AVX2, wasm simd128) has a tile for every
                // block type.
                let tiles = all.iter().filter(|(name, _)| name.contains(" ×")).count();
                assert!(all.is_empty() || tiles > 0, "{ty}: no tile among {all:?}");
                for (name, y) in &all {
                    assert!(
                        (scalar - y).abs() <= 1e-4 * (1.0 + scalar.abs()),
                        "{ty} row {r} token {t}: scalar {scalar} vs {name} {y}"
                    );
                    // "AVX2 ×4" is a tile of AVX2's, whose one-token kernel is named "AVX2".
                    let Some((isa, _)) = name.split_once(" ×") else {
                        continue;
                    };
                    let one = all.iter().find(|(n, _)| n == isa).map(|(_, y)| *y);
                    assert_eq!(
                        one.map(f32::to_bits),
                        Some(y.to_bits()),
                        "{ty} row {r} token {t}: {name} {y} vs {isa} {one:?}"
                    );
                }
            }
        }
    }
});

// Matrices of several types sharing one input in one parallel region, the tiles of each
// matrix's kernel set side by side: each output is what the matrix gives alone, token by token.
dual_test!(mixed_matrices_in_tiles_equal_each_alone, {
    let mut rng = SeededRng::new(29);
    let (cols, tokens) = (512, 11);
    let x = rng.vec_f32(tokens * cols, 1.0);
    let matrices: Vec<QMatrix> = [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::F16,
        GgmlType::Q6K,
        GgmlType::Q4_0,
    ]
    .iter()
    .zip([33, 7, 19, 5, 21, 40])
    .map(|(&ty, rows)| matrix(&mut rng, ty, rows, cols))
    .collect();
    let refs: Vec<&QMatrix> = matrices.iter().collect();
    let together = matmul_many(&x, tokens, &refs);
    for (m, y) in matrices.iter().zip(&together) {
        for t in 0..tokens {
            let alone = matmul(&x[t * cols..(t + 1) * cols], 1, m);
            assert_eq!(
                &y[t * m.rows..(t + 1) * m.rows],
                &alone[..],
                "{} token {t}",
                m.ty
            );
        }
    }
});
