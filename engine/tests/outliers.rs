//! Outlier features and 8-bit activations on the bundled model: keeping every column wide is
//! the f32 run to the bit; the outliers named stand out of their layers; WebGPU's 8-bit runs
//! follow the CPU's.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cpu_engine, model_path};
use engine::analysis::outliers::{outlier_features, STANDS_OUT};
use engine::runtime::{Device, Engine};
use pollster::block_on;

const PROMPT: &str = "The capital of France is Paris. The capital of Germany is";

#[test]
fn outliers_stand_out_and_a_wide_threshold_changes_nothing() {
    let engine = cpu_engine();
    let ids = engine.tokenizer().encode(PROMPT).unwrap();
    let report = block_on(outlier_features(&engine, &ids, Some(0.0))).unwrap();
    let c = engine.config();
    assert_eq!(report.magnitudes.len(), c.n_layers);
    assert!(report.magnitudes.iter().all(|l| l.len() == c.d_model));
    assert!(
        !report.outliers.is_empty(),
        "this model has massive activations"
    );
    let median = |layer: &Vec<f32>| {
        let mut sorted = layer.clone();
        sorted.sort_by(f32::total_cmp);
        sorted[sorted.len() / 2]
    };
    for o in &report.outliers {
        assert_eq!(report.magnitudes[o.layer][o.dimension], o.largest);
        let standing = report
            .magnitudes
            .iter()
            .filter(|layer| layer[o.dimension] >= STANDS_OUT * median(layer))
            .count();
        assert_eq!(standing, o.layers);
        assert!(standing > 0);
    }
    let names: Vec<&str> = report.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["f32", "8-bit", "8-bit, outliers wide"]);
    // Threshold 0: every column stays wide, which is the f32 run.
    assert_eq!(report.runs[2].max_logprob_drift, 0.0);
    assert_eq!(report.runs[2].top, report.runs[0].top);
    assert!(report.runs[1].max_logprob_drift > 0.0);
    eprintln!(
        "outliers {:?}; 8-bit drift {}",
        &report.outliers[..report.outliers.len().min(3)],
        report.runs[1].max_logprob_drift
    );
}

#[test]
fn webgpu_rounds_activations_as_the_cpu_does() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let gpu = Engine::load_file(Device::WebGpu(gpu), &model_path()).unwrap();
    let cpu = cpu_engine();
    let ids = cpu.tokenizer().encode(PROMPT).unwrap();
    let want = block_on(outlier_features(&cpu, &ids, None)).unwrap();
    let got = block_on(outlier_features(&gpu, &ids, None)).unwrap();
    let dims = |r: &engine::analysis::outliers::OutlierReport| {
        r.outliers.iter().map(|o| o.dimension).collect::<Vec<_>>()
    };
    assert_eq!(dims(&got), dims(&want));
    for (g, w) in got.runs.iter().zip(&want.runs) {
        assert_eq!(g.top[0].0, w.top[0].0, "{}", w.name);
        let gap = (g.top[0].1 - w.top[0].1).abs();
        eprintln!("{}: WebGPU vs CPU top-1 log-prob gap {gap:e}", w.name);
        // A value on a rounding boundary may round either way on the GPU (its reciprocal is
        // not IEEE's) and the step moves on through 30 blocks.
        assert!(gap < 0.05, "{}: gap {gap}", w.name);
    }
}
