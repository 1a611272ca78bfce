//! A bounded mutation fuzz of the whole load path: GGUF header, tokenizer, chat template, model
//! build and a first token, seeded from the bundled model (its metadata, tokenizer and template,
//! on a model shrunk to a few kB of weights so that thousands of loads take seconds). Every
//! mutated file must be refused with an error or load and run: no panic, no abort.
//!
//! The regression corpus: the header values that once crashed the load path (listed in the
//! issue that asked for this test) as named mutations, plus any file in
//! `tests/fixtures/load_fuzz/` (a failing run of the fuzz saves its input there).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use engine::cpu::CpuBackend;
use engine::gguf::blocks::{quantize_q4_1, quantize_q8_0};
use engine::gguf::{GgmlType, GgufEvent, GgufStream, GgufWriter, Limits, MetadataValue};
use engine::runtime::{Feed, LanguageModel, LanguageModelLoader, Session};
use engine::testing::SeededRng;
use engine::text::chat::ChatMessage;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

const ITERATIONS: usize = 4000;
const VOCAB: usize = 512;

type Metadata = Vec<(String, MetadataValue)>;
type Tensors = Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>;

/// The bundled model's metadata on a model of 2 layers of width 64 and a vocabulary of its
/// first 512 tokens (with the merges among them).
fn seed() -> (Metadata, Tensors) {
    let bytes = std::fs::read(common::model_path()).unwrap();
    let header = match GgufStream::new(Limits::default(), None)
        .push(&bytes)
        .unwrap()
        .remove(0)
    {
        GgufEvent::Header(h) => h,
        other => panic!("{other:?}"),
    };
    let tokens: Vec<String> = header
        .get_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .iter()
        .take(VOCAB)
        .map(|t| t.to_string())
        .collect();
    let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let merges: Vec<MetadataValue> = header
        .get_str_array("tokenizer.ggml.merges")
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.split_once(' ').is_some_and(|(a, b)| {
                known.contains(a) && known.contains(b) && known.contains(format!("{a}{b}").as_str())
            })
        })
        .map(|m| MetadataValue::String(m.to_string()))
        .collect();
    let shrunk = |key: &str| -> Option<MetadataValue> {
        Some(match key {
            "llama.block_count" => MetadataValue::U32(2),
            "llama.embedding_length" => MetadataValue::U32(64),
            "llama.feed_forward_length" => MetadataValue::U32(128),
            "llama.attention.head_count" => MetadataValue::U32(4),
            "llama.attention.head_count_kv" => MetadataValue::U32(2),
            "llama.rope.dimension_count" => MetadataValue::U32(16),
            "llama.context_length" => MetadataValue::U32(256),
            "tokenizer.ggml.tokens" => MetadataValue::Array(
                tokens
                    .iter()
                    .map(|t| MetadataValue::String(t.clone()))
                    .collect(),
            ),
            "tokenizer.ggml.merges" => MetadataValue::Array(merges.clone()),
            "tokenizer.ggml.token_type" => {
                MetadataValue::Array(header.get_array(key).unwrap()[..VOCAB].to_vec())
            }
            "tokenizer.ggml.scores" => return None,
            _ => return None,
        })
    };
    let metadata: Metadata = header
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "tokenizer.ggml.scores")
        .map(|(k, v)| (k.clone(), shrunk(k).unwrap_or_else(|| v.clone())))
        .collect();
    let mut rng = SeededRng::new(2026);
    let mut tensors: Tensors = Vec::new();
    let mut matrix = |name: &str, cols: usize, rows: usize, ty: GgmlType| {
        let values = rng.vec_f32(rows * cols, 0.5);
        let data = match ty {
            GgmlType::Q8_0 => quantize_q8_0(&values),
            _ => quantize_q4_1(&values),
        };
        tensors.push((name.to_string(), vec![cols as u64, rows as u64], ty, data));
    };
    matrix("token_embd.weight", 64, VOCAB, GgmlType::Q8_0);
    for i in 0..2 {
        matrix(&format!("blk.{i}.attn_q.weight"), 64, 64, GgmlType::Q4_1);
        matrix(&format!("blk.{i}.attn_k.weight"), 64, 32, GgmlType::Q4_1);
        matrix(&format!("blk.{i}.attn_v.weight"), 64, 32, GgmlType::Q4_1);
        matrix(
            &format!("blk.{i}.attn_output.weight"),
            64,
            64,
            GgmlType::Q4_1,
        );
        matrix(&format!("blk.{i}.ffn_gate.weight"), 64, 128, GgmlType::Q4_1);
        matrix(&format!("blk.{i}.ffn_up.weight"), 64, 128, GgmlType::Q4_1);
        matrix(&format!("blk.{i}.ffn_down.weight"), 128, 64, GgmlType::Q4_1);
    }
    let ones: Vec<u8> = (0..64).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    let mut norm = |name: String| tensors.push((name, vec![64], GgmlType::F32, ones.clone()));
    norm("output_norm.weight".into());
    for i in 0..2 {
        norm(format!("blk.{i}.attn_norm.weight"));
        norm(format!("blk.{i}.ffn_norm.weight"));
    }
    (metadata, tensors)
}

fn serialize(metadata: &Metadata, tensors: &Tensors) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in metadata {
        w.metadata(k, v.clone());
    }
    for (name, dims, ty, data) in tensors {
        w.tensor(name, dims, *ty, data.clone());
    }
    w.to_bytes()
}

/// Everything a user of the file would do: load it, tokenize, render the chat template, feed a
/// token and read the logits. Errors are fine; only a panic is a failure.
fn load_and_use(bytes: &[u8]) -> Result<(), String> {
    let backend = CpuBackend::new();
    let mut loader = LanguageModelLoader::<CpuBackend>::new(Some(bytes.len() as u64));
    for chunk in bytes.chunks(bytes.len().div_ceil(3).max(1)) {
        loader.push(&backend, chunk).map_err(|e| e.to_string())?;
    }
    let model: LanguageModel<CpuBackend> = loader.finish().map_err(|e| e.to_string())?;
    let ids = model
        .tokenizer
        .encode("Hello world! 123")
        .map_err(|e| e.to_string())?;
    if let Some(template) = &model.template {
        let _ = template.render(&[ChatMessage::new("user", "Hi")], true);
    }
    let mut session = Session::new(&model, &backend, 64).map_err(|e| e.to_string())?;
    let first = ids.first().copied().unwrap_or(0);
    pollster::block_on(session.feed(&model, &backend, Feed::append(&[first])))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs `bytes` through [`load_and_use`]: `Ok` with its result, or `Err` with the message of
/// the panic it hit.
fn survives(bytes: &[u8]) -> Result<Result<(), String>, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| load_and_use(bytes))).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

/// A value a header might hold instead of the right one.
fn hostile(rng: &mut SeededRng) -> MetadataValue {
    let pick = rng.next_u64() % 12;
    match pick {
        0 => MetadataValue::U32(0),
        1 => MetadataValue::U64(1 << 31),
        2 => MetadataValue::U64(1 << 40),
        3 => MetadataValue::U64(1 << 62),
        4 => MetadataValue::U64(u64::MAX),
        5 => MetadataValue::I32(-1),
        6 => MetadataValue::F32(f32::NAN),
        7 => MetadataValue::F32(f32::INFINITY),
        8 => MetadataValue::F32(-1.0),
        9 => MetadataValue::String(String::new()),
        10 => MetadataValue::Array(Vec::new()),
        _ => MetadataValue::U32((rng.next_u64() % 70_000) as u32),
    }
}

/// One random mutation of the seed.
fn mutate(metadata: &Metadata, tensors: &Tensors, rng: &mut SeededRng) -> Vec<u8> {
    let (mut metadata, mut tensors) = (metadata.clone(), tensors.clone());
    let r = |rng: &mut SeededRng, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    match r(rng, 8) {
        0 | 1 => {
            let i = r(rng, metadata.len());
            metadata[i].1 = hostile(rng);
        }
        2 => {
            // One flipped bit in a key's name.
            let i = r(rng, metadata.len());
            let mut key = metadata[i].0.clone().into_bytes();
            let at = r(rng, key.len());
            key[at] ^= 1 << r(rng, 7);
            metadata[i].0 = String::from_utf8_lossy(&key).into_owned();
        }
        3 => {
            metadata.remove(r(rng, metadata.len()));
        }
        4 => {
            let i = r(rng, tensors.len());
            let dims = &mut tensors[i].1;
            let d = r(rng, dims.len());
            dims[d] = match r(rng, 4) {
                0 => dims[d] * 2,
                1 => (dims[d] / 2).max(1),
                2 => dims[d] + 32,
                _ => 1,
            };
        }
        5 => {
            tensors.remove(r(rng, tensors.len()));
        }
        _ => {
            // Raw bytes: flipped bits or a cut, anywhere in the file.
            let mut bytes = serialize(&metadata, &tensors);
            if r(rng, 2) == 0 {
                for _ in 0..1 + r(rng, 8) {
                    let at = r(rng, bytes.len());
                    bytes[at] ^= 1 << r(rng, 8);
                }
            } else {
                bytes.truncate(r(rng, bytes.len()));
            }
            return bytes;
        }
    }
    serialize(&metadata, &tensors)
}

/// The header values that crashed the load path before it checked them, and whether each must
/// be refused (a huge context is capped instead, and the model runs).
fn regressions(metadata: &Metadata, tensors: &Tensors) -> Vec<(&'static str, Vec<u8>, bool)> {
    let with = |key: &str, value: MetadataValue| {
        let mut m = metadata.clone();
        for entry in &mut m {
            if entry.0 == key {
                entry.1 = value.clone();
            }
        }
        serialize(&m, tensors)
    };
    let renamed = |from: &str, to: &str| {
        let mut m = metadata.clone();
        for entry in &mut m {
            if entry.0 == from {
                entry.0 = to.to_string();
            }
        }
        serialize(&m, tensors)
    };
    let short_norm = {
        let mut t = tensors.clone();
        for entry in &mut t {
            if entry.0 == "blk.0.attn_norm.weight" {
                entry.1 = vec![32];
                entry.3.truncate(32 * 4);
            }
        }
        serialize(metadata, &t)
    };
    let refused = |name, bytes| (name, bytes, true);
    vec![
        refused(
            "head_count_kv = 3 (k has 2 heads)",
            with("llama.attention.head_count_kv", MetadataValue::U32(3)),
        ),
        refused(
            "head_count_kv = 1",
            with("llama.attention.head_count_kv", MetadataValue::U32(1)),
        ),
        refused(
            "a flipped bit in head_count_kv's name",
            renamed(
                "llama.attention.head_count_kv",
                "llama.attention.head_count_kw",
            ),
        ),
        // A context from the header is capped: the model runs.
        (
            "context_length = 2^31",
            with("llama.context_length", MetadataValue::U64(1 << 31)),
            false,
        ),
        (
            "context_length = 2^40",
            with("llama.context_length", MetadataValue::U64(1 << 40)),
            false,
        ),
        (
            "context_length = 2^62",
            with("llama.context_length", MetadataValue::U64(1 << 62)),
            false,
        ),
        refused(
            "rms epsilon NaN",
            with(
                "llama.attention.layer_norm_rms_epsilon",
                MetadataValue::F32(f32::NAN),
            ),
        ),
        refused(
            "rms epsilon negative",
            with(
                "llama.attention.layer_norm_rms_epsilon",
                MetadataValue::F32(-1e-5),
            ),
        ),
        refused(
            "rope base NaN",
            with("llama.rope.freq_base", MetadataValue::F32(f32::NAN)),
        ),
        refused("a norm of the wrong length", short_norm),
    ]
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/load_fuzz")
}

#[test]
fn no_mutation_of_the_model_file_makes_the_load_path_panic() {
    let (metadata, tensors) = seed();
    let seed_bytes = serialize(&metadata, &tensors);
    load_and_use(&seed_bytes).expect("the unmutated seed loads and runs");
    // Silence the default hook while panics are being caught and counted.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (name, bytes, must_refuse) in regressions(&metadata, &tensors) {
        match survives(&bytes) {
            Err(panic) => failures.push(format!("regression {name:?}: {panic}")),
            // Refused, not run on garbage.
            Ok(Ok(())) if must_refuse => failures.push(format!("regression {name:?} loaded")),
            Ok(_) => {}
        }
    }
    if let Ok(entries) = std::fs::read_dir(corpus_dir()) {
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            if let Err(panic) = survives(&bytes) {
                failures.push(format!("corpus {}: {panic}", entry.path().display()));
            }
        }
    }
    let mut rng = SeededRng::new(17);
    let mut refused = 0;
    for i in 0..ITERATIONS {
        let bytes = mutate(&metadata, &tensors, &mut rng);
        match survives(&bytes) {
            Ok(result) => refused += usize::from(result.is_err()),
            Err(panic) => {
                let _ = std::fs::create_dir_all(corpus_dir());
                let path = corpus_dir().join(format!("mutation-{i}.gguf"));
                let _ = std::fs::write(&path, &bytes);
                failures.push(format!("mutation {i} ({}): {panic}", path.display()));
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!("{ITERATIONS} mutations: {refused} refused with an error, the rest loaded and ran");
    assert!(
        failures.is_empty(),
        "{} inputs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
