//! Every WGSL kernel against its CPU twin, natively (lavapipe) and in Chromium (SwiftShader):
//! seeded random inputs, sizes that are not multiples of the workgroup, stated tolerances, and
//! failures that name the first bad index.
//!
//! Each check is an async function; `gpu_test!` turns it into a native `#[test]` and a
//! `wasm_bindgen_test`. Where no adapter exists the native test says so and passes, unless
//! `GLASSBOX_REQUIRE_GPU=1` (set by `cargo xtask test`), where it fails.

use engine::backend::{
    penalized_top_k, AttentionShape, Backend, Mask, RetentionForm, RopeSpec, RopeStyle, Selection,
};
use engine::cpu::{
    attention, gelu, group_norm_rows, retention, rms_norm_rows, rope_halves, rope_interleaved,
    CpuBackend,
};
use engine::gguf::blocks;
use engine::gguf::{GgmlType, TensorInfo};
use engine::gpu::GpuBackend;
use engine::testing::{check_close, SeededRng};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

macro_rules! gpu_test {
    ($name:ident, $check:ident) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on(async {
                if let Some(gpu) = backend().await {
                    $check(&gpu).await
                }
            })
        }

        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            let gpu = backend()
                .await
                .expect("Chromium should offer a WebGPU adapter");
            $check(&gpu).await
        }
    };
}

async fn backend() -> Option<GpuBackend> {
    match GpuBackend::create().await {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let required = option_env_var("GLASSBOX_REQUIRE_GPU").is_some_and(|v| v == "1");
            assert!(!required, "GLASSBOX_REQUIRE_GPU=1 but: {e}");
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn option_env_var(name: &str) -> Option<String> {
    #[cfg(not(target_arch = "wasm32"))]
    return std::env::var(name).ok();
    #[cfg(target_arch = "wasm32")]
    {
        let _ = name;
        None
    }
}

fn info(name: &str, ty: GgmlType, rows: usize, cols: usize) -> TensorInfo {
    let n_bytes = ty.bytes_for(cols as u64).unwrap() * rows as u64;
    TensorInfo {
        name: name.to_string(),
        dims: if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        },
        ggml_type: ty,
        offset: 0,
        n_bytes,
    }
}

/// Random weights of `ty` with their exact f32 values.
fn weights(rng: &mut SeededRng, ty: GgmlType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let bytes = blocks::quantize(ty, &rng.vec_f32(rows * cols, 1.0));
    let exact = blocks::dequantize_to_vec(ty, &bytes);
    (bytes, exact)
}

/// Every weight type the GGUF reader accepts.
const TYPES: [GgmlType; 11] = [
    GgmlType::Q8_0,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::F16,
    GgmlType::F32,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::BF16,
];

/// A number of columns near `cols` that is a whole number of `ty`'s blocks: `cols` itself for
/// blocks of 32 and the float types, whole super-blocks of 256 for the K-quants.
fn columns(ty: GgmlType, cols: usize) -> usize {
    let block = ty.block_len() as usize;
    if block == 256 {
        cols.div_ceil(256) * 256
    } else {
        cols
    }
}

async fn check_elementwise(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(7);
    // Around and beyond the workgroup size (256), none a multiple of it but one.
    for n in [1usize, 255, 256, 257, 70_001] {
        let (a, b) = (rng.vec_f32(n, 4.0), rng.vec_f32(n, 4.0));
        let (ga, gb) = (gpu.tensor(&a, 1, n).unwrap(), gpu.tensor(&b, 1, n).unwrap());
        let sum = gpu.read(&gpu.add(&ga, &gb).unwrap()).await.unwrap();
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        check_close(&format!("add n={n}"), &sum, &want, 0.0, 0.0).unwrap();
        let gated = gpu.read(&gpu.silu_mul(&ga, &gb).unwrap()).await.unwrap();
        let want: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        check_close(&format!("silu_mul n={n}"), &gated, &want, 1e-6, 1e-5).unwrap();
        let gated = gpu.read(&gpu.gelu_mul(&ga, &gb).unwrap()).await.unwrap();
        let want: Vec<f32> = a.iter().zip(&b).map(|(g, u)| gelu(*g) * u).collect();
        check_close(&format!("gelu_mul n={n}"), &gated, &want, 1e-6, 1e-5).unwrap();
        let scaled = gpu.read(&gpu.scale(&ga, 25.3).unwrap()).await.unwrap();
        let want: Vec<f32> = a.iter().map(|x| x * 25.3).collect();
        check_close(&format!("scale n={n}"), &scaled, &want, 0.0, 0.0).unwrap();
    }
    // A reshape reads the same values with another row length.
    let x = rng.vec_f32(24, 1.0);
    let reshaped = gpu.reshape(&gpu.tensor(&x, 2, 12).unwrap(), 6, 4).unwrap();
    assert_eq!(gpu.dims(&reshaped), (6, 4));
    assert_eq!(gpu.read(&reshaped).await.unwrap(), x);
    assert!(gpu.reshape(&reshaped, 5, 4).is_err());
}
gpu_test!(elementwise_matches_cpu, check_elementwise);

async fn check_interventions_ops(gpu: &GpuBackend) {
    let cpu = CpuBackend::new();
    let mut rng = SeededRng::new(12);
    // Widths around the workgroup size; scales 0 and 1 (ablation, steering) and others.
    for (rows, cols) in [(3usize, 7usize), (5, 256), (2, 577)] {
        let x = rng.vec_f32(rows * cols, 4.0);
        let mut coefficients = rng.vec_f32(2 * cols, 2.0);
        coefficients[0] = 0.0;
        coefficients[cols - 1] = 1.0;
        let want = cpu
            .column_affine(
                &cpu.tensor(&x, rows, cols).unwrap(),
                &cpu.tensor(&coefficients, 2, cols).unwrap(),
            )
            .unwrap();
        let got = gpu
            .column_affine(
                &gpu.tensor(&x, rows, cols).unwrap(),
                &gpu.tensor(&coefficients, 2, cols).unwrap(),
            )
            .unwrap();
        let got = gpu.read(&got).await.unwrap();
        check_close(
            &format!("column_affine {rows}x{cols}"),
            &got,
            want.data(),
            1e-6,
            1e-6,
        )
        .unwrap();
        for r in 0..rows {
            assert_eq!(got[r * cols], coefficients[cols], "scale 0 gives the shift");
        }
        // Rows spliced in at the start, the middle and the end.
        for (first, n) in [(0, 1), (1, rows - 2), (rows - 1, 1)] {
            let patch = rng.vec_f32(n * cols, 1.0);
            let got = gpu
                .splice_rows(
                    &gpu.tensor(&x, rows, cols).unwrap(),
                    first,
                    &gpu.tensor(&patch, n, cols).unwrap(),
                )
                .unwrap();
            let mut want = x.clone();
            want[first * cols..(first + n) * cols].copy_from_slice(&patch);
            assert_eq!(
                gpu.read(&got).await.unwrap(),
                want,
                "splice_rows at {first}"
            );
            let cpu_got = cpu
                .splice_rows(
                    &cpu.tensor(&x, rows, cols).unwrap(),
                    first,
                    &cpu.tensor(&patch, n, cols).unwrap(),
                )
                .unwrap();
            assert_eq!(cpu_got.data(), &want[..]);
        }
    }
    // Shapes that do not fit are refused by both.
    let x = gpu.tensor(&[0.0; 6], 2, 3).unwrap();
    assert!(gpu
        .splice_rows(&x, 2, &gpu.tensor(&[0.0; 3], 1, 3).unwrap())
        .is_err());
    assert!(gpu
        .column_affine(&x, &gpu.tensor(&[0.0; 3], 1, 3).unwrap())
        .is_err());
}
gpu_test!(intervention_ops_match_cpu, check_interventions_ops);

async fn check_embedding(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(8);
    // Whole tables, and tables split into parts of a few rows (as a large vocabulary's is).
    for (ty, max_part) in TYPES
        .into_iter()
        .flat_map(|ty| [(ty, None), (ty, Some(1000))])
    {
        gpu.set_max_part_bytes(max_part);
        let (rows, cols) = (37, columns(ty, 96));
        let (bytes, exact) = weights(&mut rng, ty, rows, cols);
        let table = gpu
            .upload_matrix(&info("table", ty, rows, cols), bytes)
            .unwrap();
        let ids = [0u32, 36, 5, 5, 17];
        let got = gpu.read(&gpu.embed(&table, &ids).unwrap()).await.unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| exact[id as usize * cols..][..cols].to_vec())
            .collect();
        // Dequantization must be exact.
        check_close(
            &format!("embedding {ty} parts ≤ {max_part:?} B"),
            &got,
            &want,
            0.0,
            0.0,
        )
        .unwrap();
    }
    gpu.set_max_part_bytes(None);
}
gpu_test!(embedding_dequantizes_exactly, check_embedding);

async fn check_rms_norm(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(9);
    for (rows, cols) in [(1usize, 576), (3, 1000), (5, 37)] {
        let x = rng.vec_f32(rows * cols, 3.0);
        let gain = rng.vec_f32(cols, 1.0);
        let got = gpu
            .read(
                &gpu.rms_norm(
                    &gpu.tensor(&x, rows, cols).unwrap(),
                    &gpu.tensor(&gain, 1, cols).unwrap(),
                    1e-5,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let mut want = x.clone();
        rms_norm_rows(&mut want, &gain, 1e-5);
        check_close(&format!("rms_norm {rows}x{cols}"), &got, &want, 1e-6, 1e-5).unwrap();
    }
}
gpu_test!(rms_norm_matches_cpu, check_rms_norm);

async fn check_matmul(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(10);
    // Both matrix × vector shapes (warp-shaped for GPUs, row-per-invocation for CPU adapters).
    for cpu_shapes in [false, true] {
        gpu.set_cpu_shapes(Some(cpu_shapes));
        check_matmul_shapes(gpu, &mut rng).await;
    }
    gpu.set_cpu_shapes(None);
}

async fn check_matmul_parts(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(11);
    // Matrices split into parts of a few rows (as a large vocabulary's output matrix is): each
    // part's rows land at their offset, in every kernel shape.
    gpu.set_max_part_bytes(Some(1000));
    for cpu_shapes in [false, true] {
        gpu.set_cpu_shapes(Some(cpu_shapes));
        for ty in [GgmlType::Q8_0, GgmlType::Q4K, GgmlType::F16] {
            for (rows, cols, tokens) in [(37, 96, 1), (45, 256, 5), (70, 64, 40)] {
                check_matmul_case(gpu, &mut rng, ty, rows, columns(ty, cols), tokens).await;
            }
        }
    }
    gpu.set_cpu_shapes(None);
    gpu.set_max_part_bytes(None);
}
gpu_test!(matmul_of_split_matrices_matches_cpu, check_matmul_parts);

async fn check_matmul_shapes(gpu: &GpuBackend, rng: &mut SeededRng) {
    for ty in TYPES {
        // Rows not a multiple of 8 or 32; 1 and 2 tokens take the matrix × vector kernel, the
        // others the tiled one (tokens not a multiple of 32 either).
        for (rows, cols, tokens) in [(37, 96, 1), (70, 576, 2), (45, 160, 5), (33, 64, 40)] {
            check_matmul_case(gpu, rng, ty, rows, columns(ty, cols), tokens).await;
        }
    }
    // Float rows that are not a whole number of the kernels' 8-weight units (odd ones become
    // F32 on upload).
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for (rows, cols, tokens) in [(29, 77, 1), (29, 78, 2), (11, 77, 6)] {
            check_matmul_case(gpu, rng, ty, rows, cols, tokens).await;
        }
    }
}

async fn check_matmul_case(
    gpu: &GpuBackend,
    rng: &mut SeededRng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    tokens: usize,
) {
    let (bytes, exact) = weights(rng, ty, rows, cols);
    let w = gpu
        .upload_matrix(&info("w", ty, rows, cols), bytes)
        .unwrap();
    let x = rng.vec_f32(tokens * cols, 2.0);
    let got = gpu
        .read(
            &gpu.matmul(&gpu.tensor(&x, tokens, cols).unwrap(), &[&w])
                .unwrap()[0],
        )
        .await
        .unwrap();
    let mut want = vec![0.0f32; tokens * rows];
    for t in 0..tokens {
        for r in 0..rows {
            want[t * rows + r] = (0..cols)
                .map(|c| x[t * cols + c] as f64 * exact[r * cols + c] as f64)
                .sum::<f64>() as f32;
        }
    }
    check_close(
        &format!("{ty} {rows}x{cols} t={tokens}"),
        &got,
        &want,
        1e-4,
        1e-4,
    )
    .unwrap();
}
gpu_test!(matmul_matches_f32_math_on_dequantized_weights, check_matmul);

async fn check_rope(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(11);
    let (head_dim, heads) = (64, 3);
    // Explicit positions with a repeat and a jump, as Set-Based Prompting produces.
    let positions = [0u32, 1, 2, 2, 3, 500, 8000];
    let x = rng.vec_f32(positions.len() * heads * head_dim, 1.0);
    type Twin = fn(&mut [f32], usize, usize, &[u32], f32);
    let twins: [(RopeStyle, Twin); 2] = [
        (RopeStyle::Interleaved, rope_interleaved),
        (RopeStyle::Halves, rope_halves),
    ];
    for (style, twin) in twins {
        let got = gpu
            .read(
                &gpu.rope(
                    &gpu.tensor(&x, positions.len(), heads * head_dim).unwrap(),
                    head_dim,
                    &positions,
                    100_000.0,
                    style,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let mut want = x.clone();
        twin(&mut want, heads * head_dim, head_dim, &positions, 100_000.0);
        check_close(&format!("rope {style:?}"), &got, &want, 1e-6, 1e-5).unwrap();
    }
}
gpu_test!(rope_matches_cpu, check_rope);

async fn check_attention(gpu: &GpuBackend) {
    let shape = AttentionShape {
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
    };
    let mut rng = SeededRng::new(12);
    let kv = shape.n_kv_heads * shape.head_dim;
    let width = shape.n_heads * shape.head_dim;
    let mut gpu_cache = gpu.new_cache(shape, 300).unwrap();
    let mut cpu_cache = attention::KvCache::new(shape, 300).unwrap();
    // A prefill of 7 under a block mask (tokens 2-3 and 4-5 are two members of a set), then
    // single-token steps under the causal mask, then a chunk of 260 (past one workgroup).
    let mut visible = Mask::Causal.to_rows(7, 0);
    for (i, j) in [(4, 2), (4, 3), (5, 2), (5, 3)] {
        visible[i * 7 + j] = false;
    }
    let steps = [
        (7usize, Mask::Explicit(visible)),
        (1, Mask::Causal),
        (1, Mask::Causal),
        (260, Mask::Causal),
    ];
    for (t, mask) in steps {
        let (q, k, v) = (
            rng.vec_f32(t * width, 1.0),
            rng.vec_f32(t * kv, 1.0),
            rng.vec_f32(t * kv, 1.0),
        );
        let (out, probs) = gpu
            .attention(
                &gpu.tensor(&q, t, width).unwrap(),
                &gpu.tensor(&k, t, kv).unwrap(),
                &gpu.tensor(&v, t, kv).unwrap(),
                &mut gpu_cache,
                shape,
                &mask,
                true,
            )
            .unwrap();
        cpu_cache.append(&k, &v, t);
        let (want, want_probs) = attention::attend(&q, t, &cpu_cache, &mask, true);
        check_close(
            &format!("attention t={t}"),
            &gpu.read(&out).await.unwrap(),
            &want,
            1e-5,
            1e-4,
        )
        .unwrap();
        check_close(
            &format!("attention probabilities t={t}"),
            &gpu.read(&probs.unwrap()).await.unwrap(),
            &want_probs.unwrap(),
            1e-6,
            1e-4,
        )
        .unwrap();
    }
}
gpu_test!(attention_matches_cpu, check_attention);

/// An attention policy's eviction: both caches keep the same slots with their keys turned
/// through the same shifts, then attend one more token alike.
async fn check_cache_keep(gpu: &GpuBackend) {
    for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
        let shape = AttentionShape {
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
        };
        let mut rng = SeededRng::new(21);
        let kv = shape.n_kv_heads * shape.head_dim;
        let width = shape.n_heads * shape.head_dim;
        let mut gpu_cache = gpu.new_cache(shape, 64).unwrap();
        let mut cpu_cache = attention::KvCache::new(shape, 64).unwrap();
        let cpu = CpuBackend::new();
        let attend = |t: usize, rng: &mut SeededRng| {
            (
                rng.vec_f32(t * width, 1.0),
                rng.vec_f32(t * kv, 1.0),
                rng.vec_f32(t * kv, 1.0),
            )
        };
        let (q, k, v) = attend(40, &mut rng);
        let upload = |x: &[f32], cols| gpu.tensor(x, x.len() / cols, cols).unwrap();
        gpu.attention(
            &upload(&q, width),
            &upload(&k, kv),
            &upload(&v, kv),
            &mut gpu_cache,
            shape,
            &Mask::Causal,
            false,
        )
        .unwrap();
        cpu_cache.append(&k, &v, 40);
        // Four start tokens stay put; the last 20 move back by the 16 evicted.
        let keep: Vec<usize> = (0..4).chain(20..40).collect();
        let shifts: Vec<i32> = keep.iter().map(|&s| if s < 4 { 0 } else { -16 }).collect();
        let rope = RopeSpec {
            base: 10_000.0,
            style,
        };
        gpu.cache_keep(&mut gpu_cache, &keep, &shifts, rope)
            .unwrap();
        cpu.cache_keep(&mut cpu_cache, &keep, &shifts, rope)
            .unwrap();
        assert_eq!(gpu.cache_len(&gpu_cache), 24);
        let (q, k, v) = attend(1, &mut rng);
        let (out, probs) = gpu
            .attention(
                &upload(&q, width),
                &upload(&k, kv),
                &upload(&v, kv),
                &mut gpu_cache,
                shape,
                &Mask::Causal,
                true,
            )
            .unwrap();
        cpu_cache.append(&k, &v, 1);
        let (want, want_probs) = attention::attend(&q, 1, &cpu_cache, &Mask::Causal, true);
        let what = format!("attention after cache_keep ({style:?})");
        check_close(&what, &gpu.read(&out).await.unwrap(), &want, 1e-5, 1e-4).unwrap();
        check_close(
            &format!("{what}: probabilities"),
            &gpu.read(&probs.unwrap()).await.unwrap(),
            &want_probs.unwrap(),
            1e-6,
            1e-4,
        )
        .unwrap();
    }
}
gpu_test!(cache_keep_matches_cpu, check_cache_keep);

/// 8-bit activations: the same rounding per block, the same outlier columns kept wide. WGSL's
/// division is not IEEE's (SwiftShader's scale can be an ulp off, which moves every value of
/// its block by an ulp), and a value exactly between two steps may then round either way: at
/// most one step apart, and rarely a whole step.
async fn check_quantize_activations(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(23);
    let (rows, cols) = (5, 600);
    let mut x = rng.vec_f32(rows * cols, 1.0);
    for col in [3, 77, 500] {
        x[2 * cols + col] = 20.0 + col as f32 / 100.0;
    }
    let cpu = CpuBackend::new();
    for threshold in [None, Some(6.0), Some(0.0)] {
        let want = cpu
            .read(
                &cpu.quantize_activations(&cpu.tensor(&x, rows, cols).unwrap(), threshold)
                    .unwrap(),
            )
            .await
            .unwrap();
        let got = gpu
            .read(
                &gpu.quantize_activations(&gpu.tensor(&x, rows, cols).unwrap(), threshold)
                    .unwrap(),
            )
            .await
            .unwrap();
        let step = 25.0 / 127.0;
        let mut differ = 0;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= step + 1e-5,
                "{threshold:?} [{i}]: {g} vs {w}"
            );
            differ += usize::from((g - w).abs() > step / 1000.0);
        }
        assert!(
            differ * 100 <= got.len(),
            "{threshold:?}: {differ} values a step apart"
        );
        if threshold == Some(6.0) {
            assert_eq!(
                got[2 * cols + 77],
                x[2 * cols + 77],
                "an outlier stays wide"
            );
        }
        if threshold == Some(0.0) {
            assert_eq!(got, x);
        }
    }
}
gpu_test!(quantize_activations_matches_cpu, check_quantize_activations);

/// A key cached at position p and turned back by d equals the key rotated at p − d directly.
#[test]
fn cache_keep_turns_keys_to_their_new_positions() {
    let shape = AttentionShape {
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 64,
    };
    let cpu = CpuBackend::new();
    let mut rng = SeededRng::new(22);
    let raw = rng.vec_f32(10 * 128, 1.0);
    for (style, rotate) in [
        (
            RopeStyle::Interleaved,
            rope_interleaved as fn(&mut [f32], usize, usize, &[u32], f32),
        ),
        (RopeStyle::Halves, rope_halves),
    ] {
        let rotated_at = |positions: &[u32]| {
            let mut keys = raw.clone();
            rotate(&mut keys, 128, 64, positions, 10_000.0);
            keys
        };
        let fed: Vec<u32> = (0..10).map(|i| 1000 + 37 * i).collect();
        let mut cache = attention::KvCache::new(shape, 10).unwrap();
        cache.append(&rotated_at(&fed), &raw, 10);
        let keep = [0usize, 3, 9];
        let shifts = [-1000i32, -500, 25];
        let rope = RopeSpec {
            base: 10_000.0,
            style,
        };
        cpu.cache_keep(&mut cache, &keep, &shifts, rope).unwrap();
        // Row `slot` of the raw keys rotated at its new position.
        let mut moved = vec![0u32; 10];
        for (&slot, shift) in keep.iter().zip(shifts) {
            moved[slot] = (fed[slot] as i64 + shift as i64) as u32;
        }
        let want = rotated_at(&moved);
        for (i, &slot) in keep.iter().enumerate() {
            for g in 0..2 {
                let got = &cache.keys[(g * 10 + i) * 64..(g * 10 + i + 1) * 64];
                let expected = &want[slot * 128 + g * 64..slot * 128 + (g + 1) * 64];
                check_close(
                    &format!("{style:?} key {slot} head {g}"),
                    got,
                    expected,
                    2e-4,
                    1e-4,
                )
                .unwrap();
                let value = &cache.values[(g * 10 + i) * 64..(g * 10 + i + 1) * 64];
                assert_eq!(value, &raw[slot * 128 + g * 64..slot * 128 + (g + 1) * 64]);
            }
        }
        assert!(cpu.cache_keep(&mut cache, &[2, 1], &[0, 0], rope).is_err());
    }
}

async fn check_top_k(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(13);
    let n = 49_152;
    let mut logits = rng.vec_f32(2 * n, 10.0);
    // Ties, to check the order (higher logit first, then lower id).
    logits[n + 100] = 50.0;
    logits[n + 7] = 50.0;
    let tensor = gpu.tensor(&logits, 2, n).unwrap();
    for (k, penalized, penalty) in [
        (1usize, vec![], 1.0f32),
        (5, vec![7u32, 7, 300], 1.3),
        (40, vec![100], 2.0),
    ] {
        let selection = Selection {
            k,
            penalized: penalized.clone(),
            penalty,
        };
        let got = gpu.top_k(&tensor, &selection).await.unwrap();
        let want = penalized_top_k(&logits[n..], k, &penalized, penalty);
        assert_eq!(
            got.iter().map(|p| p.0).collect::<Vec<_>>(),
            want.iter().map(|p| p.0).collect::<Vec<_>>(),
            "k={k}"
        );
        let (g, w): (Vec<f32>, Vec<f32>) = (
            got.iter().map(|p| p.1).collect(),
            want.iter().map(|p| p.1).collect(),
        );
        check_close(&format!("top-{k} logits"), &g, &w, 0.0, 1e-6).unwrap();
    }
}
gpu_test!(top_k_matches_cpu, check_top_k);

async fn check_gelu(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(14);
    for n in [1usize, 257, 5_000] {
        // Wide enough to reach the saturated tails, where a naive tanh overflows.
        let mut x = rng.vec_f32(n, 12.0);
        x[0] = -90.0;
        let got = gpu
            .read(&gpu.gelu(&gpu.tensor(&x, 1, n).unwrap()).unwrap())
            .await
            .unwrap();
        let want: Vec<f32> = x.iter().map(|&v| gelu(v)).collect();
        check_close(&format!("gelu n={n}"), &got, &want, 1e-6, 1e-5).unwrap();
    }
}
gpu_test!(gelu_matches_cpu, check_gelu);

async fn check_group_norm(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(15);
    // LayerNorm (1 group) and per-head GroupNorm, rows not a multiple of the workgroup.
    for (rows, cols, groups) in [(50usize, 64, 1), (50, 64, 4), (3, 96, 6), (65, 20, 2)] {
        let x = rng.vec_f32(rows * cols, 3.0);
        let (weight, bias) = (rng.vec_f32(cols, 1.0), rng.vec_f32(cols, 1.0));
        let got = gpu
            .read(
                &gpu.group_norm(
                    &gpu.tensor(&x, rows, cols).unwrap(),
                    groups,
                    &gpu.tensor(&weight, 1, cols).unwrap(),
                    &gpu.tensor(&bias, 1, cols).unwrap(),
                    1e-5,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let mut want = x.clone();
        group_norm_rows(&mut want, groups, &weight, &bias, 1e-5);
        check_close(
            &format!("group_norm {rows}x{cols}/{groups}"),
            &got,
            &want,
            1e-5,
            1e-5,
        )
        .unwrap();
    }
}
gpu_test!(group_norm_matches_cpu, check_group_norm);

async fn check_retention(gpu: &GpuBackend) {
    let mut rng = SeededRng::new(16);
    // The ViR's shape (50 tokens, 4 heads of 16), and odd ones.
    for (t, heads, head_dim) in [(50usize, 4usize, 16usize), (37, 3, 8), (5, 2, 64)] {
        let width = heads * head_dim;
        let (q, k, v) = (
            rng.vec_f32(t * width, 1.0),
            rng.vec_f32(t * width, 1.0),
            rng.vec_f32(t * width, 1.0),
        );
        let decays: Vec<f32> = (0..heads).map(|h| 0.97 - 0.1 * h as f32).collect();
        let [gq, gk, gv] = [&q, &k, &v].map(|x| gpu.tensor(x, t, width).unwrap());
        for form in [
            RetentionForm::Parallel,
            RetentionForm::Recurrent,
            RetentionForm::Chunkwise(1),
            RetentionForm::Chunkwise(3),
            RetentionForm::Chunkwise(16),
            RetentionForm::Chunkwise(t),
        ] {
            let (out, scores) = gpu
                .retention(&gq, &gk, &gv, head_dim, &decays, form, true)
                .unwrap();
            let got = gpu.read(&out).await.unwrap();
            let want = match form {
                RetentionForm::Parallel => retention::parallel(&q, &k, &v, t, head_dim, &decays),
                RetentionForm::Recurrent => retention::recurrent(&q, &k, &v, t, head_dim, &decays),
                RetentionForm::Chunkwise(b) => {
                    retention::chunkwise(&q, &k, &v, t, head_dim, &decays, b)
                }
            };
            let what = format!("retention {form:?} t={t} heads={heads} d={head_dim}");
            check_close(&what, &got, &want, 1e-4, 1e-4).unwrap();
            let got = gpu.read(&scores.unwrap()).await.unwrap();
            let want = retention::scores(&q, &k, t, head_dim, &decays);
            check_close(&format!("{what} scores"), &got, &want, 1e-5, 1e-5).unwrap();
        }
    }
}
gpu_test!(retention_matches_cpu, check_retention);
