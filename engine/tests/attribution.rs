//! Direct logit attribution on the bundled model: the parts sum to the logit of the forward
//! pass; a head's part is its slice of `attn_output.weight` (dequantized here from the file)
//! times its output; WebGPU gives the CPU's parts.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cpu_engine, model_path};
use engine::analysis::attribution::direct_logit_attribution;
use engine::gguf::blocks::dequantize_to_vec;
use engine::runtime::{Device, Engine};
use engine::testing::SeededRng;
use pollster::block_on;

const PROMPT: &str = "The Eiffel Tower is in the city of";

#[test]
fn the_parts_sum_to_the_logit() {
    let engine = cpu_engine();
    let ids = engine.tokenizer().encode(PROMPT).unwrap();
    let found = block_on(direct_logit_attribution(&engine, &ids, None)).unwrap();
    let c = engine.config();
    assert_eq!(found.heads.len(), c.n_layers);
    assert!(found.heads.iter().all(|row| row.len() == c.n_heads));
    assert_eq!(found.mlps.len(), c.n_layers);
    let gap = (found.total - found.logit).abs();
    eprintln!(
        "target {} logit {} = parts {} (gap {gap:e}); embedding {}, largest head {:?}",
        found.target,
        found.logit,
        found.total,
        found.embedding,
        found
            .heads
            .iter()
            .flatten()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
    );
    assert!(gap < 2e-3 * found.logit.abs().max(1.0), "gap {gap}");
    // Another target's parts sum to its own logit.
    let other = block_on(direct_logit_attribution(&engine, &ids, Some(42))).unwrap();
    assert_eq!(other.target, 42);
    assert!((other.total - other.logit).abs() < 2e-3 * other.logit.abs().max(1.0));
    assert!(block_on(direct_logit_attribution(&engine, &ids, Some(1 << 30))).is_err());
}

#[test]
fn a_heads_part_is_its_columns_of_the_output_projection() {
    let engine = cpu_engine();
    let c = engine.config().clone();
    let header = engine.header().clone();
    let bytes = std::fs::read(model_path()).unwrap();
    let layer = 7;
    let info = header
        .tensors
        .iter()
        .find(|t| t.name == format!("blk.{layer}.attn_output.weight"))
        .unwrap();
    let start = (header.data_offset + info.offset) as usize;
    let weight = dequantize_to_vec(info.ggml_type, &bytes[start..start + info.n_bytes as usize]);
    let width = c.n_heads * c.head_dim;
    let mut rng = SeededRng::new(5);
    let rows = rng.vec_f32(2 * width, 1.0);
    let got = block_on(engine.project_heads(layer, &rows, 2)).unwrap();
    for r in 0..2 {
        for o in 0..c.d_model {
            let want: f32 = (0..width)
                .map(|i| weight[o * width + i] * rows[r * width + i])
                .sum();
            let have = got[r * c.d_model + o];
            assert!(
                (have - want).abs() < 1e-4 * (1.0 + want.abs()),
                "row {r} output {o}: {have} vs {want}"
            );
        }
    }
}

#[test]
fn webgpu_attributes_as_the_cpu_does() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let gpu = Engine::load_file(Device::WebGpu(gpu), &model_path()).unwrap();
    let cpu = cpu_engine();
    let ids = cpu.tokenizer().encode(PROMPT).unwrap();
    let want = block_on(direct_logit_attribution(&cpu, &ids, None)).unwrap();
    let got = block_on(direct_logit_attribution(&gpu, &ids, Some(want.target))).unwrap();
    let parts = |a: &engine::analysis::attribution::LogitAttribution| {
        let mut all = vec![a.embedding];
        all.extend(a.heads.iter().flatten());
        all.extend(&a.mlps);
        all
    };
    for (i, (g, w)) in parts(&got).iter().zip(parts(&want)).enumerate() {
        assert!((g - w).abs() < 1e-2, "part {i}: WebGPU {g}, CPU {w}");
    }
}
