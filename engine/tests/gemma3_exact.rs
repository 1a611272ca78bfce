//! Gemma 3 270M against an independent forward pass written here, in f64, straight from the
//! architecture's definition over the same dequantized weights (no engine code but the GGUF
//! reader and the block dequantization, which other tests check against ggml): next-token
//! log-probs within 0.02 on the reference's top 5, on the CPU and on WebGPU.
//!
//! This is the exactness bar. llama.cpp's own error on this model is far larger (its 8-bit
//! activations meet Gemma's large activations), so the llama.cpp fixtures are compared with a
//! loose bound in `llamacpp_fidelity.rs`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use engine::gguf::blocks::dequantize_to_vec;
use engine::gguf::{GgmlType, GgufEvent, GgufHeader, GgufStream, Limits};
use engine::numerics::{log_sum_exp, top_k};
use engine::runtime::{Device, Engine, Feed};
use std::collections::HashMap;
use std::sync::Arc;

const TOLERANCE: f64 = 0.02;

/// Prompts fed from their start (BOS first, as the model asks).
const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):\n    if n <",
    "Once upon a time, a small robot named",
];

/// The model's weights, dequantized to f32; the embedding stays in its blocks (it is 168M
/// weights) and is dequantized a row at a time.
struct Weights {
    header: Arc<GgufHeader>,
    tensors: HashMap<String, Vec<f32>>,
    embedding: (GgmlType, usize, Vec<u8>),
}

impl Weights {
    fn load() -> Weights {
        let bytes = std::fs::read(common::gemma_path()).expect("read the Gemma model");
        let mut stream = GgufStream::new(Limits::default(), Some(bytes.len() as u64));
        let (mut header, mut tensors, mut embedding) = (None, HashMap::new(), None);
        for event in stream.push(&bytes).expect("parse") {
            match event {
                GgufEvent::Header(h) => header = Some(h),
                GgufEvent::Tensor(t) if t.info.name == "token_embd.weight" => {
                    let cols = t.info.dims[0] as usize;
                    embedding = Some((t.info.ggml_type, cols, t.bytes.to_vec()));
                }
                GgufEvent::Tensor(t) => {
                    let values = dequantize_to_vec(t.info.ggml_type, &t.bytes);
                    tensors.insert(t.info.name.clone(), values);
                }
            }
        }
        Weights {
            header: header.expect("a header"),
            tensors,
            embedding: embedding.expect("token_embd.weight"),
        }
    }

    fn get(&self, name: &str) -> &[f32] {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("tensor {name}"))
    }

    fn u(&self, key: &str) -> usize {
        self.header.get_u64(key).unwrap() as usize
    }

    fn embedding_row(&self, id: usize) -> Vec<f32> {
        let (ty, cols, bytes) = &self.embedding;
        let row_bytes = ty.bytes_for(*cols as u64).unwrap() as usize;
        dequantize_to_vec(*ty, &bytes[id * row_bytes..(id + 1) * row_bytes])
    }
}

fn rms_norm(x: &[f64], gain: &[f32], eps: f64) -> Vec<f64> {
    let mean = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (mean + eps).sqrt();
    x.iter()
        .zip(gain)
        .map(|(v, g)| v * scale * *g as f64)
        .collect()
}

/// `x · Wᵀ` for W of `rows` rows of `x.len()` columns, row-major.
fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(a, b)| *a as f64 * b).sum())
        .collect()
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// GPT-NeoX RoPE on one head: pairs (i, i + d/2) turned by pos · base^(-2i/d).
fn rope(head: &mut [f64], pos: usize, base: f64) {
    let half = head.len() / 2;
    for i in 0..half {
        let theta = pos as f64 * base.powf(-2.0 * i as f64 / head.len() as f64);
        let (a, b) = (head[i], head[i + half]);
        head[i] = a * theta.cos() - b * theta.sin();
        head[i + half] = a * theta.sin() + b * theta.cos();
    }
}

/// The next-token logits after `ids`, from the definition.
fn reference_logits(w: &Weights, ids: &[u32]) -> Vec<f64> {
    let d = w.u("gemma3.embedding_length");
    let (heads, kv_heads) = (
        w.u("gemma3.attention.head_count"),
        w.u("gemma3.attention.head_count_kv"),
    );
    let hd = w.u("gemma3.attention.key_length");
    let layers = w.u("gemma3.block_count");
    let window = w.u("gemma3.attention.sliding_window");
    let eps = w
        .header
        .get_f64("gemma3.attention.layer_norm_rms_epsilon")
        .unwrap();
    let global_base = w.header.get_f64("gemma3.rope.freq_base").unwrap();
    let t = ids.len();
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .map(|&id| {
            let scale = (d as f64).sqrt();
            w.embedding_row(id as usize)
                .iter()
                .map(|&v| v as f64 * scale)
                .collect()
        })
        .collect();
    for l in 0..layers {
        let p = |name: &str| format!("blk.{l}.{name}.weight");
        let local = l % 6 != 5;
        let base = if local { 10_000.0 } else { global_base };
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, row) in x.iter().enumerate() {
            let h = rms_norm(row, w.get(&p("attn_norm")), eps);
            let mut q = matvec(w.get(&p("attn_q")), &h);
            let mut k = matvec(w.get(&p("attn_k")), &h);
            for head in q.chunks_exact_mut(hd) {
                let normed = rms_norm(head, w.get(&p("attn_q_norm")), eps);
                head.copy_from_slice(&normed);
                rope(head, pos, base);
            }
            for head in k.chunks_exact_mut(hd) {
                let normed = rms_norm(head, w.get(&p("attn_k_norm")), eps);
                head.copy_from_slice(&normed);
                rope(head, pos, base);
            }
            qs.push(q);
            ks.push(k);
            vs.push(matvec(w.get(&p("attn_v")), &h));
        }
        for i in 0..t {
            let mut attended = vec![0.0; heads * hd];
            for h in 0..heads {
                let g = h / (heads / kv_heads);
                let q = &qs[i][h * hd..(h + 1) * hd];
                let visible: Vec<usize> = (0..=i).filter(|&j| !local || i - j < window).collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        let k = &ks[j][g * hd..(g + 1) * hd];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for (&j, s) in visible.iter().zip(&scores) {
                    let weight = (s - max).exp() / total;
                    for (o, v) in attended[h * hd..(h + 1) * hd]
                        .iter_mut()
                        .zip(&vs[j][g * hd..(g + 1) * hd])
                    {
                        *o += weight * v;
                    }
                }
            }
            let o = matvec(w.get(&p("attn_output")), &attended);
            let o = rms_norm(&o, w.get(&p("post_attention_norm")), eps);
            x[i].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = rms_norm(&x[i], w.get(&p("ffn_norm")), eps);
            let gate = matvec(w.get(&p("ffn_gate")), &h);
            let up = matvec(w.get(&p("ffn_up")), &h);
            let hidden: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| gelu(*g) * u).collect();
            let down = matvec(w.get(&p("ffn_down")), &hidden);
            let down = rms_norm(&down, w.get(&p("post_ffw_norm")), eps);
            x[i].iter_mut().zip(&down).for_each(|(a, b)| *a += b);
        }
    }
    let h = rms_norm(&x[t - 1], w.get("output_norm.weight"), eps);
    let vocab = w.header.tensor("token_embd.weight").unwrap().dims[1] as usize;
    (0..vocab)
        .map(|id| {
            w.embedding_row(id)
                .iter()
                .zip(&h)
                .map(|(a, b)| *a as f64 * b)
                .sum()
        })
        .collect()
}

fn log_softmax_f64(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    logits.iter().map(|l| l - lse).collect()
}

fn check(engine: &Engine, weights: &Weights) {
    for prompt in PROMPTS {
        let ids = engine
            .tokenizer()
            .with_bos(&engine.tokenizer().encode(prompt).unwrap());
        let want = log_softmax_f64(&reference_logits(weights, &ids));
        let mut session = engine.session(64).unwrap();
        let got = pollster::block_on(session.feed(Feed::append(&ids)))
            .unwrap()
            .logits;
        let lse = log_sum_exp(&got);
        let want_f32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        let mut worst = 0f64;
        for (id, _) in top_k(&want_f32, 5) {
            let delta = (got[id as usize] - lse) as f64 - want[id as usize];
            worst = worst.max(delta.abs());
        }
        eprintln!(
            "{} {prompt:?}: max |Δ log-prob| on the reference's top 5 = {worst:.4}",
            engine.backend_name()
        );
        assert!(
            worst <= TOLERANCE,
            "{prompt:?} on {}: |Δ log-prob| {worst} > {TOLERANCE}",
            engine.backend_name()
        );
        assert_eq!(
            top_k(&got, 1)[0].0,
            top_k(&want_f32, 1)[0].0,
            "{prompt:?}: a different top-1"
        );
    }
}

#[test]
fn cpu_and_webgpu_match_the_definition() {
    let weights = Weights::load();
    check(
        &Engine::load_file(Device::Cpu, &common::gemma_path()).unwrap(),
        &weights,
    );
    if let Some(gpu) = common::gpu_or_skip() {
        check(
            &Engine::load_file(Device::WebGpu(gpu), &common::gemma_path()).unwrap(),
            &weights,
        );
    }
}
