//! The MNIST ViT and ViR: both backends and all three retention forms agree on models with
//! random weights (built here as GGUF files), and the shipped models reproduce the accuracy
//! recorded in `www/models/vision.json` by `glassbox eval-vision`.
#![cfg(not(target_arch = "wasm32"))] // native: files on disk, pollster

mod common;

use engine::analysis::rollout::vision_rollout;
use engine::backend::{Backend, RetentionForm};
use engine::cpu::CpuBackend;
use engine::gguf::blocks;
use engine::gguf::{GgmlType, GgufWriter, MetadataValue};
use engine::models::vision::{
    center_like_mnist, patch_rows, read_test_set, Classification, VisionModel,
};
use engine::testing::{check_close, SeededRng};
use std::path::PathBuf;

const D: usize = 64;
const HEADS: usize = 4;
const BLOCKS: usize = 2;
const FFN: usize = 128;
const TOKENS: usize = 50;

/// A GGUF laid out as `docs/vision.md` says, with random weights.
fn random_model(arch: &str, seed: u64) -> Vec<u8> {
    let mut rng = SeededRng::new(seed);
    let mut w = GgufWriter::new();
    let u32v = |v: usize| MetadataValue::U32(v as u32);
    w.metadata("general.architecture", MetadataValue::String(arch.into()));
    for (key, value) in [
        ("image_size", 28),
        ("patch_size", 4),
        ("embedding_length", D),
        ("block_count", BLOCKS),
        ("attention.head_count", HEADS),
        ("feed_forward_length", FFN),
        ("class_count", 10),
    ] {
        w.metadata(&format!("{arch}.{key}"), u32v(value));
    }
    w.metadata(
        &format!("{arch}.attention.layer_norm_epsilon"),
        MetadataValue::F32(1e-5),
    );
    if arch == "vir" {
        let decays = [0.96875f32, 0.99, 0.995, 0.998];
        w.metadata(
            "vir.retention.decays",
            MetadataValue::Array(decays.iter().map(|&g| MetadataValue::F32(g)).collect()),
        );
    }
    let mut q8 = |w: &mut GgufWriter, name: &str, rows: usize, cols: usize| {
        let values = rng.vec_f32(rows * cols, 1.0 / (cols as f32).sqrt() * 1.7);
        let bytes = blocks::quantize_q8_0(&values);
        w.tensor(name, &[cols as u64, rows as u64], GgmlType::Q8_0, bytes);
    };
    let mut f32s = SeededRng::new(seed + 1);
    let mut f32t = |w: &mut GgufWriter, name: &str, dims: &[u64], around: f32| {
        let n = dims.iter().product::<u64>() as usize;
        let values: Vec<f32> = f32s.vec_f32(n, 0.3).iter().map(|v| v + around).collect();
        w.tensor_f32(name, dims, &values);
    };
    f32t(&mut w, "patch_embd.weight", &[16, D as u64], 0.0);
    f32t(&mut w, "pos_embd.weight", &[D as u64, TOKENS as u64], 0.0);
    for i in 0..BLOCKS {
        f32t(
            &mut w,
            &format!("blk.{i}.attn_norm.weight"),
            &[D as u64],
            1.0,
        );
        f32t(&mut w, &format!("blk.{i}.attn_norm.bias"), &[D as u64], 0.0);
        for m in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            q8(&mut w, &format!("blk.{i}.{m}.weight"), D, D);
        }
        if arch == "vir" {
            q8(&mut w, &format!("blk.{i}.ret_gate.weight"), D, D);
            f32t(
                &mut w,
                &format!("blk.{i}.ret_norm.weight"),
                &[D as u64],
                1.0,
            );
            f32t(&mut w, &format!("blk.{i}.ret_norm.bias"), &[D as u64], 0.0);
        }
        f32t(
            &mut w,
            &format!("blk.{i}.ffn_norm.weight"),
            &[D as u64],
            1.0,
        );
        f32t(&mut w, &format!("blk.{i}.ffn_norm.bias"), &[D as u64], 0.0);
        q8(&mut w, &format!("blk.{i}.ffn_up.weight"), FFN, D);
        q8(&mut w, &format!("blk.{i}.ffn_down.weight"), D, FFN);
    }
    f32t(&mut w, "output_norm.weight", &[D as u64], 1.0);
    f32t(&mut w, "output_norm.bias", &[D as u64], 0.0);
    q8(&mut w, "output.weight", 10, D);
    w.to_bytes()
}

fn random_image(seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    (0..784).map(|_| rng.next_f32()).collect()
}

fn classify<B: Backend>(
    backend: &B,
    model: &VisionModel<B>,
    image: &[f32],
    form: RetentionForm,
) -> Classification {
    pollster::block_on(model.classify(backend, image, form, true)).unwrap()
}

#[test]
fn patches_are_raster_order_with_the_class_token_last() {
    let bytes = random_model("vit", 1);
    let (_, model) = VisionModel::load(&CpuBackend::new(), &bytes).unwrap();
    let image: Vec<f32> = (0..784).map(|i| i as f32).collect();
    let rows = patch_rows(model.config(), &image).unwrap();
    assert_eq!(rows.len(), 50 * 16);
    // Patch 8 is grid row 1, column 1: pixels (4..8, 4..8).
    assert_eq!(&rows[8 * 16..8 * 16 + 4], &[116.0, 117.0, 118.0, 119.0]);
    assert_eq!(rows[8 * 16 + 4], (5 * 28 + 4) as f32);
    assert!(rows[49 * 16..].iter().all(|&v| v == 0.0), "class token row");
    let err = patch_rows(model.config(), &image[..700]).unwrap_err();
    assert!(err.to_string().contains("784 pixels"), "{err}");
}

#[test]
fn a_drawing_is_scaled_and_centred_like_mnist() {
    // A short bar in the top-left corner: 2 wide, 5 tall.
    let mut image = vec![0.0f32; 784];
    for y in 1..6 {
        for x in 2..4 {
            image[y * 28 + x] = 1.0;
        }
    }
    let out = center_like_mnist(&image);
    let rows: Vec<usize> = (0..28)
        .filter(|y| out[y * 28..][..28].iter().any(|&v| v > 0.0))
        .collect();
    // Scaled to 20 rows tall, centred: rows 4..=23.
    assert_eq!((rows[0], rows[rows.len() - 1]), (4, 23), "rows {rows:?}");
    let (mass, mx): (f32, f32) = out.iter().enumerate().fold((0.0, 0.0), |(m, x), (i, &v)| {
        (m + v, x + v * (i % 28) as f32)
    });
    assert!(
        (mx / mass - 13.5).abs() <= 0.5,
        "centre of mass x {}",
        mx / mass
    );
    assert_eq!(center_like_mnist(&[0.0; 784]), vec![0.0; 784]);
}

#[test]
fn vir_forms_give_the_same_classification() {
    let cpu = CpuBackend::new();
    let (_, model) = VisionModel::load(&cpu, &random_model("vir", 2)).unwrap();
    for seed in 0..3 {
        let image = random_image(100 + seed);
        let parallel = classify(&cpu, &model, &image, RetentionForm::Parallel);
        for form in [
            RetentionForm::Recurrent,
            RetentionForm::Chunkwise(1),
            RetentionForm::Chunkwise(3),
            RetentionForm::Chunkwise(16),
            RetentionForm::Chunkwise(TOKENS),
        ] {
            let other = classify(&cpu, &model, &image, form);
            check_close(
                &format!("{form:?} logits"),
                &other.logits,
                &parallel.logits,
                1e-4,
                1e-4,
            )
            .unwrap();
        }
    }
}

#[test]
fn vit_attention_rows_are_distributions_and_rollout_too() {
    let cpu = CpuBackend::new();
    let (_, model) = VisionModel::load(&cpu, &random_model("vit", 3)).unwrap();
    let result = classify(&cpu, &model, &random_image(7), RetentionForm::Parallel);
    assert_eq!(result.mixing.len(), BLOCKS);
    for layer in &result.mixing {
        assert_eq!(layer.len(), HEADS * TOKENS * TOKENS);
        for row in layer.chunks_exact(TOKENS) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
        }
    }
    let rollout = vision_rollout(&result, HEADS, TOKENS);
    for row in rollout.chunks_exact(TOKENS) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "rollout row sums to {sum}");
    }
    let sum: f32 = result.probs.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5);
}

#[test]
fn cpu_and_webgpu_agree_on_both_models() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (arch, seed) in [("vit", 4u64), ("vir", 5)] {
        let bytes = random_model(arch, seed);
        let (_, on_cpu) = VisionModel::load(&cpu, &bytes).unwrap();
        let (_, on_gpu) = VisionModel::load(&gpu, &bytes).unwrap();
        for form in [
            RetentionForm::Parallel,
            RetentionForm::Recurrent,
            RetentionForm::Chunkwise(7),
        ] {
            let image = random_image(seed * 10);
            let want = classify(&cpu, &on_cpu, &image, form);
            let got = classify(&gpu, &on_gpu, &image, form);
            let what = format!("{arch} {form:?}");
            check_close(
                &format!("{what} logits"),
                &got.logits,
                &want.logits,
                1e-4,
                1e-4,
            )
            .unwrap();
            for (l, (g, w)) in got.mixing.iter().zip(&want.mixing).enumerate() {
                check_close(&format!("{what} block {l} mixing"), g, w, 1e-5, 1e-4).unwrap();
            }
        }
    }
}

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../www/models")
        .join(name)
}

/// What `glassbox eval-vision --write-report` recorded for one model.
fn report(arch: &str) -> (usize, Vec<usize>) {
    let text = std::fs::read_to_string(shipped("vision.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &all[arch];
    let correct = entry["correct"].as_u64().unwrap() as usize;
    let predictions = entry["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as usize)
        .collect();
    (correct, predictions)
}

#[test]
fn shipped_models_reach_the_reported_accuracy() {
    let test_set = read_test_set(&std::fs::read(shipped("mnist-test.bin")).unwrap()).unwrap();
    assert_eq!(test_set.len(), 1000);
    let cpu = CpuBackend::new();
    for arch in ["vit", "vir"] {
        let (correct, predictions) = report(arch);
        let (_, model) =
            VisionModel::load_file(&cpu, &shipped(&format!("{arch}-mnist.gguf"))).unwrap();
        let got: Vec<usize> = test_set
            .iter()
            .map(|d| {
                pollster::block_on(model.classify(&cpu, &d.pixels, RetentionForm::Parallel, false))
                    .unwrap()
                    .top()
            })
            .collect();
        let got_correct = got
            .iter()
            .zip(&test_set)
            .filter(|(&p, d)| p == d.label as usize)
            .count();
        assert_eq!(got_correct, correct, "{arch}: correct test digits");
        assert_eq!(got, predictions, "{arch}: predictions");
        // The bar.
        assert!(correct >= 970, "{arch}: {correct}/1000 is below 97%");
    }
}

#[test]
fn shipped_models_predict_the_same_on_webgpu() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let test_set = read_test_set(&std::fs::read(shipped("mnist-test.bin")).unwrap()).unwrap();
    for arch in ["vit", "vir"] {
        let (_, predictions) = report(arch);
        let (_, model) =
            VisionModel::load_file(&gpu, &shipped(&format!("{arch}-mnist.gguf"))).unwrap();
        // A tenth of the split keeps lavapipe's share of the test run short.
        for (i, digit) in test_set.iter().enumerate().step_by(10) {
            let form = [
                RetentionForm::Parallel,
                RetentionForm::Recurrent,
                RetentionForm::Chunkwise(16),
            ][i % 3];
            let got = pollster::block_on(model.classify(&gpu, &digit.pixels, form, false))
                .unwrap()
                .top();
            assert_eq!(got, predictions[i], "{arch} test digit {i} ({form:?})");
        }
    }
}
