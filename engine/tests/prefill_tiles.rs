//! Prefill in tiles of tokens, natively (AVX2 / AVX-512 where the CPU has them) and in Chromium
//! (wasm simd128): every tile kernel gives each token exactly what its instruction set's
//! one-token kernel gives (and the plain-Rust twin up to summation order), and a matmul of many
//! tokens equals the same matmul token by token, to the bit, for every weight type and for
//! token and row counts that leave partial tiles. The prompt's attention, which has its own
//! kernel too, equals the plain per-head loops it replaced, to the bit.

use engine::backend::{AttentionShape, Mask};
use engine::cpu::attention::{attend, dot, softmax_in_place, KvCache};
use engine::cpu::quant::{
    every_simd_dot, matmul, matmul_many, scalar_dot, takes_f32_activations, Q16Activations, QMatrix,
};
use engine::gguf::blocks;
use engine::gguf::GgmlType;
use engine::testing::SeededRng;

mod kernel_cases;
use kernel_cases::{dual_test, TYPES};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

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

/// Columns past the blocks (32 of 32, 8 of the K-quants' 256) whose scales a tile kernel
/// reads ahead at a time, with a partial last group: each block keeps its chain across groups.
fn long_cols(ty: GgmlType) -> usize {
    match ty.block_len() {
        256 => 256 * 19,
        32 => 32 * 69,
        _ => 83 * 5,
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
    let types = TYPES.into_iter().filter(|&ty| !takes_f32_activations(ty));
    for (ty, cols) in types.flat_map(|ty| [(ty, cols(ty)), (ty, long_cols(ty))]) {
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
                        "{ty} {cols} cols, row {r} token {t}: scalar {scalar} vs {name} {y}"
                    );
                    // "AVX2 ×4" is a tile of AVX2's, whose one-token kernel is named "AVX2".
                    let Some((isa, _)) = name.split_once(" ×") else {
                        continue;
                    };
                    let one = all.iter().find(|(n, _)| n == isa).map(|(_, y)| *y);
                    assert_eq!(
                        one.map(f32::to_bits),
                        Some(y.to_bits()),
                        "{ty} {cols} cols, row {r} token {t}: {name} {y} vs {isa} {one:?}"
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

/// Attention as the CPU backend computed it before prefill had its own kernel: per head and
/// query, the scores, their softmax, and the values' weighted sum in f64, key by key. Returns
/// the output `(t, heads·head_dim)` and the probabilities `(heads·t, keys)`.
fn plain_attention(q: &[f32], t: usize, cache: &KvCache, mask: &Mask) -> (Vec<f32>, Vec<f32>) {
    let AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim: d,
    } = cache.shape;
    let (total, scale) = (cache.len, 1.0 / (d as f32).sqrt());
    let row = |g: usize, j: usize, of: &[f32]| {
        let at = (g * cache.capacity + j) * d;
        of[at..at + d].to_vec()
    };
    let (mut out, mut probs) = (vec![0.0; t * n_heads * d], vec![0.0; n_heads * t * total]);
    for h in 0..n_heads {
        let g = h / (n_heads / n_kv_heads);
        for i in 0..t {
            let query = &q[(i * n_heads + h) * d..][..d];
            let mut scores: Vec<f32> = (0..total)
                .map(|j| match mask.visible(i, j, total - t, total) {
                    true => dot(query, &row(g, j, &cache.keys)) * scale,
                    false => f32::NEG_INFINITY,
                })
                .collect();
            softmax_in_place(&mut scores);
            let mut acc = vec![0.0f64; d];
            for (j, &p) in scores.iter().enumerate() {
                if p > 0.0 {
                    for (a, &v) in acc.iter_mut().zip(&row(g, j, &cache.values)) {
                        *a += p as f64 * v as f64;
                    }
                }
            }
            for (o, a) in out[(i * n_heads + h) * d..][..d].iter_mut().zip(acc) {
                *o = a as f32;
            }
            probs[(h * t + i) * total..][..total].copy_from_slice(&scores);
        }
    }
    (out, probs)
}

// The CPU attention of a prompt (keys read transposed, the heads of a group together, wide
// vectors or wasm's) and of the tokens after it (keys one by one) gives the plain loops' numbers
// to the bit: grouped heads of 64 and of an odd size, a mask with holes as Set-Based Prompting
// makes, prompt lengths that leave partial tiles of keys.
dual_test!(attention_equals_the_plain_loops_to_the_bit, {
    let mut rng = SeededRng::new(31);
    for (n_heads, n_kv_heads, head_dim, t) in [(9, 3, 64, 37), (4, 1, 76, 21), (6, 2, 32, 5)] {
        let shape = AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        };
        let kv = n_kv_heads * head_dim;
        let mut cache = KvCache::new(shape, t + 2).unwrap();
        let mut holes = Mask::Causal.to_rows(t, 0);
        for (i, v) in holes.iter_mut().enumerate() {
            *v &= i % 7 != 3;
        }
        // The prompt, then two tokens one at a time.
        for (new, mask) in [
            (t, Mask::Explicit(holes)),
            (1, Mask::Causal),
            (1, Mask::Causal),
        ] {
            cache.append(
                &rng.vec_f32(new * kv, 1.0),
                &rng.vec_f32(new * kv, 1.0),
                new,
            );
            let q = rng.vec_f32(new * n_heads * head_dim, 2.0);
            let (out, probs) = attend(&q, new, &cache, &mask, true);
            let (want_out, want_probs) = plain_attention(&q, new, &cache, &mask);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let at = format!("{n_heads} heads ({n_kv_heads} groups) of {head_dim}, {new} new");
            assert_eq!(bits(&out), bits(&want_out), "{at}: output");
            assert_eq!(
                bits(&probs.unwrap()),
                bits(&want_probs),
                "{at}: probabilities"
            );
        }
    }
});
