//! Dequantization against ggml's own: `fixtures/dequant_reference.json` holds blocks of every
//! type Glassbox reads (random ones, edge cases, ones ggml quantized) and the f32 bit patterns
//! ggml's `to_float` made of them (made by `tools/llamacpp/make_dequant_reference.py` on
//! another branch). `gguf/blocks.rs`, the reference of every kernel, must give the same bits,
//! NaN payloads and signed zeros included; the WebGPU `gather` kernel the same finite values
//! (WGSL leaves infinities and NaNs from unpacked halves undefined).
//!
//! Until the fixture is on this branch, the test prints that it skipped and passes.
#![cfg(not(target_arch = "wasm32"))]

use engine::backend::Backend;
use engine::gguf::blocks;
use engine::gguf::{GgmlType, TensorInfo};
use serde_json::Value;
use std::path::PathBuf;

/// One fixture block: its type, raw bytes (whole blocks) and ggml's f32 bits.
struct Case {
    ty: GgmlType,
    what: String,
    bytes: Vec<u8>,
    bits: Vec<u32>,
}

#[test]
fn dequantization_equals_ggml_on_reference_blocks() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant_reference.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} is not here yet", path.display());
        return;
    };
    let json: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    let cases = cases(&json);
    let gpu = gpu();
    for case in &cases {
        let ours = blocks::dequantize_to_vec(case.ty, &case.bytes);
        let ours: Vec<u32> = ours.iter().map(|v| v.to_bits()).collect();
        assert_same(
            &format!("{} gguf/blocks.rs", case.what),
            &ours,
            &case.bits,
            false,
        );
        if let Some(gpu) = &gpu {
            // The blocks as one row of a table, gathered whole.
            let n = case.bits.len();
            let info = TensorInfo {
                name: "reference".to_string(),
                dims: vec![n as u64, 1],
                ggml_type: case.ty,
                offset: 0,
                n_bytes: case.bytes.len() as u64,
            };
            let table = gpu.upload_matrix(&info, case.bytes.clone()).unwrap();
            let got = pollster::block_on(gpu.read(&gpu.embed(&table, &[0]).unwrap())).unwrap();
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_same(
                &format!("{} WebGPU gather", case.what),
                &got,
                &case.bits,
                true,
            );
        }
    }
    let mut types: Vec<&str> = cases.iter().map(|c| c.ty.name()).collect();
    types.dedup();
    println!("{} reference blocks equal ggml's: {types:?}", cases.len());
}

/// The WebGPU backend, or None (with a message) where there is no adapter.
fn gpu() -> Option<engine::gpu::GpuBackend> {
    match pollster::block_on(engine::gpu::GpuBackend::create()) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let required = std::env::var("GLASSBOX_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "GLASSBOX_REQUIRE_GPU=1 but: {e}");
            eprintln!("WebGPU part skipped: {e}");
            None
        }
    }
}

/// The same bit patterns (with `finite_only`, only where ggml's value is finite); the error
/// names the first that differs.
fn assert_same(what: &str, got: &[u32], want: &[u32], finite_only: bool) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let differs = |i: &usize| {
        let finite = f32::from_bits(want[*i]).is_finite();
        got[*i] != want[*i] && (finite || !finite_only)
    };
    if let Some(i) = (0..got.len()).find(differs) {
        panic!(
            "{what}: value {i} is {} ({:#010x}), ggml gives {} ({:#010x})",
            f32::from_bits(got[i]),
            got[i],
            f32::from_bits(want[i]),
            want[i]
        );
    }
}

/// Every block of the fixture: `types` maps ggml's name of a type to its `ggml_type` id,
/// `block_size`, `type_size` and `blocks`, each with its `case`, `hex` bytes and `bits`.
fn cases(json: &Value) -> Vec<Case> {
    let types = json["types"].as_object().expect("a `types` object");
    let mut out = Vec::new();
    for (name, entry) in types {
        let id = entry["ggml_type"].as_u64().expect("ggml_type") as u32;
        let ty = GgmlType::from_u32(id).unwrap_or_else(|| panic!("{name}: id {id} not read"));
        assert_eq!(ty.name(), name, "ggml's name for id {id}");
        assert_eq!(
            entry["block_size"].as_u64(),
            Some(ty.block_len()),
            "{name} block size"
        );
        assert_eq!(
            entry["type_size"].as_u64(),
            Some(ty.block_bytes()),
            "{name} block bytes"
        );
        for block in entry["blocks"].as_array().expect("blocks") {
            let what = format!("{name} {:?}", block["case"].as_str().unwrap_or("?"));
            let hex = block["hex"].as_str().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
                .collect();
            let bits: Vec<u32> = block["bits"]
                .as_array()
                .expect("bits")
                .iter()
                .map(|b| u32::from_str_radix(b.as_str().expect("hex bits"), 16).expect("bits"))
                .collect();
            let n_blocks = bytes.len() / ty.block_bytes() as usize;
            assert_eq!(
                bytes.len() % ty.block_bytes() as usize,
                0,
                "{what}: whole blocks"
            );
            assert_eq!(
                bits.len(),
                n_blocks * ty.block_len() as usize,
                "{what}: values"
            );
            out.push(Case {
                ty,
                what,
                bytes,
                bits,
            });
        }
    }
    assert!(!out.is_empty(), "no blocks in the fixture");
    out
}
