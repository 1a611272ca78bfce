//! The ViT and the ViR of `docs/vision.md`, written with candle tensors so that autograd can
//! train them. This is the training twin of the engine's `models/vit.rs` and `models/vir.rs`
//! (inference on any backend); the shipped-model test checks that the two agree on the test
//! split. Weights are looked up by their GGUF names, so export is a loop over the map.

use crate::gelu::fused_gelu;
use candle_core::{DType, Device, Result, Tensor, Var, D};
use engine::rng::SeededRng;
use std::collections::BTreeMap;

pub const PATCH: usize = 4;
pub const GRID: usize = 7;
/// 49 patches and the class token, last.
pub const TOKENS: usize = GRID * GRID + 1;
pub const CLASSES: usize = 10;
pub const EPS: f64 = 1e-5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Vit,
    Vir,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Vit => "vit",
            Arch::Vir => "vir",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub d: usize,
    pub heads: usize,
    pub blocks: usize,
    pub ffn: usize,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.d / self.heads
    }

    /// ViR: γ_h = 1 − exp(linspace(ln 1/32, ln 1/512, H)).
    pub fn decays(&self) -> Vec<f32> {
        let (a, b) = ((1.0f64 / 32.0).ln(), (1.0f64 / 512.0).ln());
        (0..self.heads)
            .map(|h| {
                let f = if self.heads == 1 {
                    0.0
                } else {
                    h as f64 / (self.heads - 1) as f64
                };
                (1.0 - (a + f * (b - a)).exp()) as f32
            })
            .collect()
    }
}

/// Weights by GGUF name: `Var`s while training, plain tensors when evaluating an export.
pub type Weights = BTreeMap<String, Tensor>;

/// Fresh weights: linear layers uniform in ±1/√fan_in, positions small, norms at identity.
/// The order of the draws below is part of the seed's meaning: keep it.
pub fn init(config: &Config, seed: u64) -> Result<BTreeMap<String, Var>> {
    let mut init = Init {
        rng: SeededRng::new(seed),
        vars: BTreeMap::new(),
    };
    let (d, ffn) = (config.d, config.ffn);
    init.matrix("patch_embd.weight", d, PATCH * PATCH)?;
    let positions = init.rng.vec_f32(TOKENS * d, 0.02);
    init.add("pos_embd.weight", &[TOKENS, d], positions)?;
    for i in 0..config.blocks {
        init.norm(&format!("blk.{i}.attn_norm"), d)?;
        let mut mixers = vec!["attn_q", "attn_k", "attn_v", "attn_output"];
        if config.arch == Arch::Vir {
            mixers.push("ret_gate");
            init.norm(&format!("blk.{i}.ret_norm"), d)?;
        }
        for m in mixers {
            init.matrix(&format!("blk.{i}.{m}.weight"), d, d)?;
        }
        init.norm(&format!("blk.{i}.ffn_norm"), d)?;
        init.matrix(&format!("blk.{i}.ffn_up.weight"), ffn, d)?;
        init.matrix(&format!("blk.{i}.ffn_down.weight"), d, ffn)?;
    }
    init.norm("output_norm", d)?;
    init.matrix("output.weight", CLASSES, d)?;
    Ok(init.vars)
}

struct Init {
    rng: SeededRng,
    vars: BTreeMap<String, Var>,
}

impl Init {
    fn add(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<()> {
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
        self.vars
            .insert(name.to_string(), Var::from_tensor(&tensor)?);
        Ok(())
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<()> {
        let values = self.rng.vec_f32(rows * cols, 1.0 / (cols as f32).sqrt());
        self.add(name, &[rows, cols], values)
    }

    fn norm(&mut self, name: &str, d: usize) -> Result<()> {
        self.add(&format!("{name}.weight"), &[d], vec![1.0; d])?;
        self.add(&format!("{name}.bias"), &[d], vec![0.0; d])
    }
}

/// The stem's input for one image of bytes: `(TOKENS, 16)`, patches in raster order, each
/// row-major, then an all-zero row for the class token (the engine's `patch_rows`).
pub fn patch_rows(pixels: &[u8]) -> Vec<f32> {
    let side = GRID * PATCH;
    let mut rows = vec![0.0; TOKENS * PATCH * PATCH];
    for patch in 0..GRID * GRID {
        let (py, px) = (patch / GRID, patch % GRID);
        for dy in 0..PATCH {
            for dx in 0..PATCH {
                let pixel = pixels[(py * PATCH + dy) * side + px * PATCH + dx];
                rows[patch * PATCH * PATCH + dy * PATCH + dx] = pixel as f32 / 255.0;
            }
        }
    }
    rows
}

fn w<'a>(weights: &'a Weights, name: &str) -> Result<&'a Tensor> {
    weights
        .get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("no weight {name}")))
}

/// `x · Wᵀ` for `x` of any rank, as one 2-D matmul over all leading dimensions.
fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (features, rows) = (dims[dims.len() - 1], x.elem_count() / dims[dims.len() - 1]);
    let mut out_dims = dims.clone();
    out_dims[dims.len() - 1] = weight.dim(0)?;
    x.reshape((rows, features))?
        .matmul(&weight.t()?)?
        .reshape(out_dims)
}

/// LayerNorm over the last dimension, from differentiable primitives.
fn layer_norm(x: &Tensor, weights: &Weights, name: &str) -> Result<Tensor> {
    let normed = normalize_last(x)?;
    normed
        .broadcast_mul(w(weights, &format!("{name}.weight"))?)?
        .broadcast_add(w(weights, &format!("{name}.bias"))?)
}

/// Zero mean, unit variance over the last dimension.
fn normalize_last(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + EPS)?.sqrt()?)
}

/// `(b, t, d)` → `(b, heads, t, head_dim)`.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    x.reshape((b, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `(b, heads, t, head_dim)` → `(b, t, d)`.
fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, hd) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, t, h * hd))
}

/// Softmax self-attention over every token.
fn attention(config: &Config, weights: &Weights, i: usize, h: &Tensor) -> Result<Tensor> {
    let p = |m: &str| format!("blk.{i}.{m}.weight");
    let q = split_heads(&linear(h, w(weights, &p("attn_q"))?)?, config.heads)?;
    let k = split_heads(&linear(h, w(weights, &p("attn_k"))?)?, config.heads)?;
    let v = split_heads(&linear(h, w(weights, &p("attn_v"))?)?, config.heads)?;
    let scale = 1.0 / (config.head_dim() as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?; // (b, heads, t, t)
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    let mixed = merge_heads(&probs.matmul(&v)?)?; // (b, t, d)
    linear(&mixed, w(weights, &p("attn_output"))?)
}

/// `(heads, t, t)`: γ_h^(n−m)/√d_head below the diagonal, 0 above (causal, no softmax).
pub fn decay_mask(config: &Config) -> Result<Tensor> {
    let scale = 1.0 / (config.head_dim() as f32).sqrt();
    let mut values = vec![0f32; config.heads * TOKENS * TOKENS];
    for (h, gamma) in config.decays().into_iter().enumerate() {
        for n in 0..TOKENS {
            for m in 0..=n {
                values[(h * TOKENS + n) * TOKENS + m] = scale * gamma.powi((n - m) as i32);
            }
        }
    }
    Tensor::from_vec(values, (config.heads, TOKENS, TOKENS), &Device::Cpu)
}

/// Gated multi-head retention, parallel form, with RetNet's per-head GroupNorm.
fn retention(
    config: &Config,
    weights: &Weights,
    i: usize,
    h: &Tensor,
    decay: &Tensor,
) -> Result<Tensor> {
    let p = |m: &str| format!("blk.{i}.{m}.weight");
    let q = split_heads(&linear(h, w(weights, &p("attn_q"))?)?, config.heads)?;
    let k = split_heads(&linear(h, w(weights, &p("attn_k"))?)?, config.heads)?;
    let v = split_heads(&linear(h, w(weights, &p("attn_v"))?)?, config.heads)?;
    let scores = q.matmul(&k.t()?)?.broadcast_mul(decay)?; // (b, heads, t, t)
    let retained = normalize_last(&scores.matmul(&v)?)?; // per head over d_head
    let normed = layer_affine(
        &merge_heads(&retained)?,
        weights,
        &format!("blk.{i}.ret_norm"),
    )?;
    let gate = linear(h, w(weights, &p("ret_gate"))?)?.silu()?;
    linear(&(gate * normed)?, w(weights, &p("attn_output"))?)
}

fn layer_affine(x: &Tensor, weights: &Weights, name: &str) -> Result<Tensor> {
    x.broadcast_mul(w(weights, &format!("{name}.weight"))?)?
        .broadcast_add(w(weights, &format!("{name}.bias"))?)
}

/// Logits `(b, 10)` for patches `(b, TOKENS, 16)`.
pub fn forward(config: &Config, weights: &Weights, patches: &Tensor) -> Result<Tensor> {
    let decay = match config.arch {
        Arch::Vir => Some(decay_mask(config)?),
        Arch::Vit => None,
    };
    let mut x = linear(patches, w(weights, "patch_embd.weight")?)?; // (b, t, d)
    x = x.broadcast_add(w(weights, "pos_embd.weight")?)?;
    for i in 0..config.blocks {
        let h = layer_norm(&x, weights, &format!("blk.{i}.attn_norm"))?;
        let mixed = match &decay {
            None => attention(config, weights, i, &h)?,
            Some(decay) => retention(config, weights, i, &h, decay)?,
        };
        x = (x + mixed)?;
        let h = layer_norm(&x, weights, &format!("blk.{i}.ffn_norm"))?;
        let h = fused_gelu(&linear(&h, w(weights, &format!("blk.{i}.ffn_up.weight"))?)?)?;
        x = (x + linear(&h, w(weights, &format!("blk.{i}.ffn_down.weight"))?)?)?;
    }
    let class_token = x.narrow(1, TOKENS - 1, 1)?.squeeze(1)?; // (b, d)
    let h = layer_norm(&class_token, weights, "output_norm")?;
    linear(&h, w(weights, "output.weight")?)
}

/// Patches for a batch of byte images: `(b, TOKENS, 16)`.
pub fn batch(images: &[Vec<u8>]) -> Result<Tensor> {
    let rows: Vec<f32> = images.iter().flat_map(|p| patch_rows(p)).collect();
    Tensor::from_vec(rows, (images.len(), TOKENS, PATCH * PATCH), &Device::Cpu)
}

/// Predicted classes for `images`, in batches of 250, half of them on a second thread.
pub fn predict(config: &Config, weights: &Weights, images: &[Vec<u8>]) -> Result<Vec<u32>> {
    let classes_of = |images: &[Vec<u8>]| -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(250) {
            let logits = forward(config, weights, &batch(chunk)?)?;
            out.extend(
                logits
                    .argmax(D::Minus1)?
                    .to_dtype(DType::U32)?
                    .to_vec1::<u32>()?,
            );
        }
        Ok(out)
    };
    let (first, second) = images.split_at(images.len() / 2);
    let (mut out, rest) = std::thread::scope(|s| {
        let second = s.spawn(|| classes_of(second));
        let first = classes_of(first);
        (first, second.join().expect("a prediction thread panicked"))
    });
    if let Ok(out) = &mut out {
        out.extend(rest?);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::models::vision::{VisionArch, VisionConfig};

    #[test]
    fn patches_are_laid_out_as_the_engine_reads_them() {
        let pixels: Vec<u8> = (0..784).map(|i| (i * 7 % 256) as u8).collect();
        let config = VisionConfig {
            arch: VisionArch::Vit,
            image_size: 28,
            patch_size: PATCH,
            d_model: 64,
            n_blocks: 1,
            n_heads: 4,
            ffn_dim: 128,
            norm_eps: 1e-5,
            n_classes: CLASSES,
            decays: Vec::new(),
        };
        let image: Vec<f32> = pixels.iter().map(|&b| b as f32 / 255.0).collect();
        let engine_rows = engine::models::vision::patch_rows(&config, &image).unwrap();
        assert_eq!(patch_rows(&pixels), engine_rows);
    }

    #[test]
    fn vir_decays_follow_the_paper() {
        let config = Config {
            arch: Arch::Vir,
            d: 64,
            heads: 4,
            blocks: 1,
            ffn: 128,
        };
        let decays = config.decays();
        assert!((decays[0] - (1.0 - 1.0 / 32.0)).abs() < 1e-6);
        assert!((decays[3] - (1.0 - 1.0 / 512.0)).abs() < 1e-6);
        assert!(decays.windows(2).all(|w| w[0] < w[1]));
    }
}
