//! Dequantization against ggml's own: `fixtures/dequant_reference.json` holds raw blocks of
//! each type and the floats ggml's `dequantize_row_*` made of them; `gguf/blocks.rs` (the
//! reference of every kernel) and the WebGPU `gather` kernel must give the same floats, bit for
//! bit (±0 alike).
//!
//! The fixture is made outside this repository; until it is here, the test prints that it
//! skipped and passes. It reads the shapes such a file plausibly has: an object of types (under
//! `types`, or at the top) or a list of entries each naming its `type`; per type one entry or a
//! list of them, each with the raw bytes (`bytes`, `blocks`, `raw` or `data`: hex, base64 or a
//! list of byte values) and the floats (`values`, `dequantized`, `floats` or `expected`).
//! A type Glassbox does not read is reported and skipped.
#![cfg(not(target_arch = "wasm32"))]

use engine::backend::Backend;
use engine::gguf::blocks;
use engine::gguf::{GgmlType, TensorInfo};
use serde_json::Value;
use std::path::PathBuf;

const TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// One fixture case: a type, whole blocks of it, and ggml's floats for them.
struct Case {
    ty: GgmlType,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant_reference.json")
}

#[test]
fn dequantization_equals_ggml_on_reference_blocks() {
    let path = fixture_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} is not here yet", path.display());
        return;
    };
    let json: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    let cases = cases(&json);
    assert!(!cases.is_empty(), "no cases found in {}", path.display());
    let gpu = gpu();
    for (i, case) in cases.iter().enumerate() {
        let ty = case.ty;
        let what = format!("case {i} ({ty}, {} bytes)", case.bytes.len());
        let block_bytes = ty.block_bytes() as usize;
        assert!(
            !case.bytes.is_empty() && case.bytes.len().is_multiple_of(block_bytes),
            "{what}: not a whole number of {block_bytes}-byte blocks"
        );
        let n = case.bytes.len() / block_bytes * ty.block_len() as usize;
        assert_eq!(case.values.len(), n, "{what}: float count");
        let ours = blocks::dequantize_to_vec(ty, &case.bytes);
        assert_same(&format!("{what} gguf/blocks.rs"), &ours, &case.values);
        if let Some(gpu) = &gpu {
            // The blocks as one row of a table, gathered whole.
            let info = TensorInfo {
                name: "reference".to_string(),
                dims: vec![n as u64, 1],
                ggml_type: ty,
                offset: 0,
                n_bytes: case.bytes.len() as u64,
            };
            let table = gpu.upload_matrix(&info, &case.bytes).unwrap();
            let got = pollster::block_on(gpu.read(&gpu.embed(&table, &[0]).unwrap())).unwrap();
            assert_same(&format!("{what} WebGPU gather"), &got, &case.values);
        }
    }
    let mut types: Vec<&str> = cases.iter().map(|c| c.ty.name()).collect();
    types.dedup();
    println!("{} reference cases equal ggml: {types:?}", cases.len());
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

/// Equal floats (+0 and -0 alike); the error names the first that differs, with its bits.
fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: value {i} is {} ({:#010x}), ggml gives {} ({:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// Every case in the fixture, whichever of the shapes in the module doc it has.
fn cases(json: &Value) -> Vec<Case> {
    let mut out = Vec::new();
    let top = json.get("types").unwrap_or(json);
    match top {
        Value::Array(entries) => {
            for entry in entries {
                let name = entry
                    .get("type")
                    .and_then(Value::as_str)
                    .expect("each entry of a list names its `type`");
                add_cases(name, entry, &mut out);
            }
        }
        Value::Object(map) => {
            for (name, entry) in map {
                add_cases(name, entry, &mut out);
            }
        }
        _ => panic!("the fixture is neither a list nor an object of types"),
    }
    out
}

/// The cases of type `name` in `entry` (one case, or a list of them).
fn add_cases(name: &str, entry: &Value, out: &mut Vec<Case>) {
    let Some(ty) = TYPES
        .iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    else {
        println!("type {name}: not one Glassbox reads, skipped");
        return;
    };
    if let Value::Array(list) = entry {
        for case in list {
            add_cases(name, case, out);
        }
        return;
    }
    let field = |names: &[&str]| names.iter().find_map(|n| entry.get(*n));
    let bytes = field(&["bytes", "blocks", "raw", "data"])
        .map(bytes_of)
        .unwrap_or_else(|| panic!("{name}: no raw bytes"));
    let values = field(&["values", "dequantized", "floats", "expected"])
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{name}: no list of floats"))
        .iter()
        .map(|v| {
            v.as_f64()
                .unwrap_or_else(|| panic!("{name}: {v} is not a number")) as f32
        })
        .collect();
    out.push(Case { ty, bytes, values });
}

/// Raw bytes from a list of byte values, a hex string or a base64 string.
fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::Array(list) => list
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .expect("a byte value")
            })
            .collect(),
        Value::String(text) => {
            let hex = text.len().is_multiple_of(2) && text.bytes().all(|c| c.is_ascii_hexdigit());
            if hex {
                (0..text.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                    .collect()
            } else {
                base64(text)
            }
        }
        other => panic!("raw bytes as {other}: expected a list, hex or base64"),
    }
}

/// Standard base64 (padding optional).
fn base64(text: &str) -> Vec<u8> {
    let digit = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("{:?} is not a base64 digit", c as char),
        }
    };
    let digits: Vec<u32> = text.trim_end_matches('=').bytes().map(digit).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | d << (18 - 6 * i));
        out.extend(&bits.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_fixture_reader_takes_every_shape_it_names() {
    // One Q8_0 block, d = 1 and quants 0..32, in each shape and byte encoding.
    let mut block = half::f16::from_f32(1.0).to_le_bytes().to_vec();
    block.extend(0u8..32);
    let values: Vec<f32> = (0..32).map(|q| q as f32).collect();
    let hex: String = block.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = {
        // Encode by hand the other way, then check it decodes back.
        const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for chunk in block.chunks(3) {
            let mut three = [0u8; 4];
            three[1..1 + chunk.len()].copy_from_slice(chunk);
            let bits = u32::from_be_bytes(three);
            for i in 0..=chunk.len() {
                s.push(DIGITS[(bits >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        s
    };
    let shapes = [
        serde_json::json!({"types": {"Q8_0": {"bytes": hex, "values": values}}}),
        serde_json::json!({"q8_0": [{"blocks": b64, "dequantized": values}]}),
        serde_json::json!([{"type": "Q8_0", "raw": block, "expected": values}]),
        serde_json::json!({"types": [{"type": "Q8_0", "data": hex, "floats": values},
                                     {"type": "IQ2_XS", "data": "00", "floats": []}]}),
    ];
    for shape in &shapes {
        let cases = cases(shape);
        assert_eq!(cases.len(), 1, "{shape}");
        assert_eq!(cases[0].ty, GgmlType::Q8_0);
        assert_eq!(cases[0].bytes, block, "{shape}");
        assert_eq!(cases[0].values, values);
        assert_same(
            "Q8_0",
            &blocks::dequantize_to_vec(GgmlType::Q8_0, &block),
            &values,
        );
    }
}
