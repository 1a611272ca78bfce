//! What the two MNIST classifiers share: their configuration (read from GGUF keys), the patch
//! stem, the GELU MLP, the classification head and the loader; and [`VisionModel`], the one type
//! the CLI and the page hold. The exact computation is written down in `docs/vision.md`, which
//! the trainer (`trainer/`) follows too.
//!
//! Layout shared by both models: 49 patches of 4 × 4 in raster order, then the class token
//! LAST (so causal retention lets it see every patch); the class token is the last row of the
//! learned position table, its patch row being all zeros.

use super::vir::Vir;
use super::vit::Vit;
use crate::backend::{Backend, RetentionForm};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufEvent, GgufHeader, GgufStream, Limits, TensorData, TensorInfo};
use std::collections::HashMap;
use std::sync::Arc;

/// Which token mixer a vision model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VisionArch {
    /// Softmax self-attention over every token.
    Vit,
    /// Causal multi-head retention with a fixed decay per head.
    Vir,
}

impl VisionArch {
    pub fn name(self) -> &'static str {
        match self {
            VisionArch::Vit => "vit",
            VisionArch::Vir => "vir",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VisionConfig {
    pub arch: VisionArch,
    pub image_size: usize,
    pub patch_size: usize,
    pub d_model: usize,
    pub n_blocks: usize,
    pub n_heads: usize,
    pub ffn_dim: usize,
    pub norm_eps: f32,
    pub n_classes: usize,
    /// ViR: one decay γ per head; empty for the ViT.
    pub decays: Vec<f32>,
}

impl VisionConfig {
    /// Reads `vit.*` or `vir.*` keys; any other architecture is refused by name.
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        let arch = match header.get_str("general.architecture")? {
            "vit" => VisionArch::Vit,
            "vir" => VisionArch::Vir,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        let prefix = arch.name();
        let get = |key: &str| -> Result<usize> {
            Ok(header.get_u64(&format!("{prefix}.{key}"))? as usize)
        };
        let decays = match arch {
            VisionArch::Vit => Vec::new(),
            VisionArch::Vir => header
                .get_array("vir.retention.decays")?
                .iter()
                .map(|v| v.as_f64().map(|g| g as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| Error::BadModel("vir.retention.decays is not numbers".into()))?,
        };
        let config = VisionConfig {
            arch,
            image_size: get("image_size")?,
            patch_size: get("patch_size")?,
            d_model: get("embedding_length")?,
            n_blocks: get("block_count")?,
            n_heads: get("attention.head_count")?,
            ffn_dim: get("feed_forward_length")?,
            norm_eps: header
                .get_f64(&format!("{prefix}.attention.layer_norm_epsilon"))
                .unwrap_or(1e-5) as f32,
            n_classes: get("class_count")?,
            decays,
        };
        let fits = config.patch_size > 0
            && config.image_size.is_multiple_of(config.patch_size)
            && config.n_heads > 0
            && config.d_model.is_multiple_of(config.n_heads)
            && config.n_blocks > 0
            && config.n_blocks <= 64
            && (arch == VisionArch::Vit
                || (config.decays.len() == config.n_heads
                    && config.decays.iter().all(|g| (0.0..1.0).contains(g))));
        if !fits {
            return Err(Error::BadModel(format!(
                "inconsistent vision model shape: {config:?}"
            )));
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Patches per side of the image.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn n_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Patches and the class token.
    pub fn n_tokens(&self) -> usize {
        self.n_patches() + 1
    }

    /// Index of the class token (the last one).
    pub fn class_token(&self) -> usize {
        self.n_patches()
    }
}

/// The stem's input: one row per token, `(n_tokens, patch²)`. Patches in raster order, each
/// flattened row-major; the class token's row (the last) is all zeros. `image` is
/// `image_size²` values in [0, 1], row-major.
pub fn patch_rows(config: &VisionConfig, image: &[f32]) -> Result<Vec<f32>> {
    let (side, p, grid) = (config.image_size, config.patch_size, config.grid());
    if image.len() != side * side {
        return Err(Error::InvalidRequest(format!(
            "an image must have {} pixels ({side} × {side}); this one has {}",
            side * side,
            image.len()
        )));
    }
    let mut rows = vec![0.0; config.n_tokens() * p * p];
    for (patch, row) in rows.chunks_exact_mut(p * p).take(grid * grid).enumerate() {
        let (py, px) = (patch / grid, patch % grid);
        for dy in 0..p {
            let pixels = &image[(py * p + dy) * side + px * p..][..p];
            row[dy * p..][..p].copy_from_slice(pixels);
        }
    }
    Ok(rows)
}

/// LayerNorm weights; with `groups` > 1 the same op is RetNet's per-head GroupNorm.
pub(crate) struct Norm<B: Backend> {
    weight: B::Tensor,
    bias: B::Tensor,
}

impl<B: Backend> Norm<B> {
    pub(crate) fn forward(
        &self,
        backend: &B,
        x: &B::Tensor,
        groups: usize,
        eps: f32,
    ) -> Result<B::Tensor> {
        backend.group_norm(x, groups, &self.weight, &self.bias, eps)
    }
}

/// Pixels to token vectors: `patches · W_patchᵀ + pos_embd`.
pub(crate) struct PatchStem<B: Backend> {
    projection: B::Matrix,
    /// `(n_tokens, d)`; its last row is the class token.
    positions: B::Tensor,
}

impl<B: Backend> PatchStem<B> {
    pub(crate) fn forward(
        &self,
        backend: &B,
        config: &VisionConfig,
        image: &[f32],
    ) -> Result<B::Tensor> {
        let p = config.patch_size;
        let rows = patch_rows(config, image)?;
        let patches = backend.tensor(&rows, config.n_tokens(), p * p)?; // (t, p²)
        let x = backend.matmul(&patches, &[&self.projection])?.remove(0); // (t, d)
        backend.add(&x, &self.positions)
    }
}

/// The pre-LN GELU MLP: `W_down · gelu(W_up · LN(x))`.
pub(crate) struct Mlp<B: Backend> {
    norm: Norm<B>,
    up: B::Matrix,
    down: B::Matrix,
}

impl<B: Backend> Mlp<B> {
    pub(crate) fn forward(&self, backend: &B, x: &B::Tensor, eps: f32) -> Result<B::Tensor> {
        let h = self.norm.forward(backend, x, 1, eps)?;
        let h = backend.matmul(&h, &[&self.up])?.remove(0); // (t, ffn)
        let h = backend.gelu(&h)?;
        Ok(backend.matmul(&h, &[&self.down])?.remove(0)) // (t, d)
    }
}

/// The class token's final norm and the linear classifier.
pub(crate) struct ClassifierHead<B: Backend> {
    norm: Norm<B>,
    output: B::Matrix,
}

impl<B: Backend> ClassifierHead<B> {
    /// `x` is `(t, d)`; returns the logits of the last (class) token: `(1, classes)`.
    pub(crate) fn forward(&self, backend: &B, x: &B::Tensor, eps: f32) -> Result<B::Tensor> {
        let class_token = backend.last_rows(x, 1)?; // (1, d)
        let h = self.norm.forward(backend, &class_token, 1, eps)?;
        Ok(backend.matmul(&h, &[&self.output])?.remove(0)) // (1, classes)
    }
}

/// The weights of a vision GGUF by name, uploaded to the backend; the models' `load` take
/// them out by their checkpoint names.
pub(crate) struct VisionWeights<B: Backend> {
    matrices: HashMap<String, B::Matrix>,
    vectors: HashMap<String, B::Tensor>,
}

impl<B: Backend> VisionWeights<B> {
    fn accept(&mut self, backend: &B, tensor: &TensorData) -> Result<()> {
        let info = &tensor.info;
        if info.name == "pos_embd.weight" {
            // A table added to the activations, not a matrix multiplied with them.
            let values = crate::cpu::blocks::dequantize_to_vec(info.ggml_type, &tensor.bytes);
            let (rows, cols) = info.rows_cols();
            let table = backend.tensor(&values, rows, cols)?;
            self.vectors.insert(info.name.clone(), table);
        } else if info.dims.len() == 1 {
            let v = backend.upload_vector(info, &tensor.bytes)?;
            self.vectors.insert(info.name.clone(), v);
        } else {
            // Widened to f32 here: at this size (under a megabyte) it costs nothing, and both
            // backends then do plain f32 arithmetic, so they agree to rounding. The CPU's
            // integer kernels would quantize the activations, which moves a logit by ~1e-4 and
            // would hide the agreement of the three retention forms.
            let values = crate::cpu::blocks::dequantize_to_vec(info.ggml_type, &tensor.bytes);
            let wide = TensorInfo {
                ggml_type: GgmlType::F32,
                n_bytes: (values.len() * 4) as u64,
                ..info.clone()
            };
            let m = backend.upload_matrix(&wide, bytemuck::cast_slice(&values))?;
            self.matrices.insert(info.name.clone(), m);
        }
        Ok(())
    }

    pub(crate) fn matrix(&mut self, name: &str) -> Result<B::Matrix> {
        self.matrices
            .remove(name)
            .ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))
    }

    pub(crate) fn vector(&mut self, name: &str) -> Result<B::Tensor> {
        self.vectors
            .remove(name)
            .ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))
    }

    pub(crate) fn norm(&mut self, name: &str) -> Result<Norm<B>> {
        Ok(Norm {
            weight: self.vector(&format!("{name}.weight"))?,
            bias: self.vector(&format!("{name}.bias"))?,
        })
    }

    pub(crate) fn stem(&mut self) -> Result<PatchStem<B>> {
        Ok(PatchStem {
            projection: self.matrix("patch_embd.weight")?,
            positions: self.vector("pos_embd.weight")?,
        })
    }

    pub(crate) fn mlp(&mut self, block: usize) -> Result<Mlp<B>> {
        Ok(Mlp {
            norm: self.norm(&format!("blk.{block}.ffn_norm"))?,
            up: self.matrix(&format!("blk.{block}.ffn_up.weight"))?,
            down: self.matrix(&format!("blk.{block}.ffn_down.weight"))?,
        })
    }

    pub(crate) fn head(&mut self) -> Result<ClassifierHead<B>> {
        Ok(ClassifierHead {
            norm: self.norm("output_norm")?,
            output: self.matrix("output.weight")?,
        })
    }
}

/// What a classification computed: class probabilities and, on request, each block's token
/// mixing matrix.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Classification {
    pub logits: Vec<f32>,
    /// Softmax of `logits`.
    pub probs: Vec<f32>,
    /// Per block, `(heads·t, t)` head-major: attention probabilities (ViT) or retention scores
    /// `(q kᵀ/√d) ⊙ D` (ViR). Empty unless requested.
    pub mixing: Vec<Vec<f32>>,
}

impl Classification {
    /// Block `layer`'s mixing matrix averaged over its `heads` heads: `(t, t)`.
    pub fn head_mean(&self, layer: usize, heads: usize) -> Vec<f32> {
        let matrices = &self.mixing[layer];
        let size = matrices.len() / heads.max(1);
        let mut mean = vec![0.0; size];
        for head in matrices.chunks_exact(size) {
            for (m, v) in mean.iter_mut().zip(head) {
                *m += v / heads as f32;
            }
        }
        mean
    }

    /// ViT: attention rollout over every block (Abnar & Zuidema), `(t, t)`.
    pub fn rollout(&self, heads: usize, t: usize) -> Vec<f32> {
        let layers: Vec<Vec<f32>> = (0..self.mixing.len())
            .map(|l| self.head_mean(l, heads))
            .collect();
        crate::inspect::rollout(&layers, t)
    }

    /// The most probable class.
    pub fn top(&self) -> usize {
        crate::sampling::top_k(&self.logits, 1)
            .first()
            .map_or(0, |&(id, _)| id as usize)
    }
}

/// A ViT or a ViR on some backend: the type the CLI and the page hold.
pub enum VisionModel<B: Backend> {
    Vit(Vit<B>),
    Vir(Vir<B>),
}

impl<B: Backend> VisionModel<B> {
    /// Parses a whole GGUF (the vision models are a few hundred kB) and uploads its weights.
    pub fn load(backend: &B, bytes: &[u8]) -> Result<(Arc<GgufHeader>, Self)> {
        let mut stream = GgufStream::new(Limits::default(), Some(bytes.len() as u64));
        let mut header = None;
        let mut weights = VisionWeights {
            matrices: HashMap::new(),
            vectors: HashMap::new(),
        };
        for event in stream.push(bytes)? {
            match event {
                GgufEvent::Header(h) => {
                    VisionConfig::from_gguf(&h)?; // refuse other files before any upload
                    header = Some(h);
                }
                GgufEvent::Tensor(tensor) => weights.accept(backend, &tensor)?,
            }
        }
        stream.finish()?;
        let header = header.ok_or_else(|| Error::BadModel("the file has no header".into()))?;
        let config = VisionConfig::from_gguf(&header)?;
        let model = match config.arch {
            VisionArch::Vit => VisionModel::Vit(Vit::load(config, &mut weights)?),
            VisionArch::Vir => VisionModel::Vir(Vir::load(config, &mut weights)?),
        };
        Ok((header, model))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(backend: &B, path: &std::path::Path) -> Result<(Arc<GgufHeader>, Self)> {
        Self::load(backend, &std::fs::read(path)?)
    }

    pub fn config(&self) -> &VisionConfig {
        match self {
            VisionModel::Vit(m) => &m.config,
            VisionModel::Vir(m) => &m.config,
        }
    }

    /// Classifies one image (`image_size²` values in [0, 1]). `form` only matters for the ViR;
    /// `capture` asks for every block's mixing matrix.
    pub async fn classify(
        &self,
        backend: &B,
        image: &[f32],
        form: RetentionForm,
        capture: bool,
    ) -> Result<Classification> {
        let (logits, mixing) = match self {
            VisionModel::Vit(m) => m.forward(backend, image, capture)?,
            VisionModel::Vir(m) => m.forward(backend, image, form, capture)?,
        };
        let logits = backend.read(&logits).await?;
        let mut matrices = Vec::with_capacity(mixing.len());
        for m in &mixing {
            matrices.push(backend.read(m).await?);
        }
        Ok(Classification {
            probs: softmax(&logits),
            logits,
            mixing: matrices,
        })
    }
}

/// Lays out a drawn 28 × 28 digit the way MNIST's digits were prepared (LeCun et al.): the ink's
/// bounding box scaled, keeping its aspect, to fit 20 × 20, then moved so its centre of mass
/// is the image's centre. A drawing made anywhere on the pad then looks like the training data.
/// An empty image comes back unchanged.
pub fn center_like_mnist(image: &[f32]) -> Vec<f32> {
    const SIDE: usize = 28;
    const BOX: f32 = 20.0;
    let ink = |x: usize, y: usize| image[y * SIDE + x];
    let (mut x0, mut y0, mut x1, mut y1) = (SIDE, SIDE, 0, 0);
    for y in 0..SIDE {
        for x in 0..SIDE {
            if ink(x, y) > 0.0 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if image.len() != SIDE * SIDE || x0 >= x1 {
        return image.to_vec();
    }
    let (w, h) = ((x1 - x0) as f32, (y1 - y0) as f32);
    let scale = BOX / w.max(h);
    let (sw, sh) = (w * scale, h * scale);
    // Scale into a 28 × 28 canvas (top-left at the origin), sampling bilinearly.
    let mut scaled = vec![0.0f32; SIDE * SIDE];
    let sample = |fx: f32, fy: f32| -> f32 {
        let (fx, fy) = (
            fx.clamp(0.0, (SIDE - 1) as f32),
            fy.clamp(0.0, (SIDE - 1) as f32),
        );
        let (ix, iy) = (fx.floor() as usize, fy.floor() as usize);
        let (jx, jy) = ((ix + 1).min(SIDE - 1), (iy + 1).min(SIDE - 1));
        let (ax, ay) = (fx - ix as f32, fy - iy as f32);
        let top = ink(ix, iy) * (1.0 - ax) + ink(jx, iy) * ax;
        let bottom = ink(ix, jy) * (1.0 - ax) + ink(jx, jy) * ax;
        top * (1.0 - ay) + bottom * ay
    };
    for y in 0..(sh.ceil() as usize).min(SIDE) {
        for x in 0..(sw.ceil() as usize).min(SIDE) {
            let fx = x0 as f32 + (x as f32 + 0.5) / scale - 0.5;
            let fy = y0 as f32 + (y as f32 + 0.5) / scale - 0.5;
            scaled[y * SIDE + x] = sample(fx, fy);
        }
    }
    // Shift the centre of mass to the middle.
    let (mut mass, mut mx, mut my) = (0.0f32, 0.0f32, 0.0f32);
    for (i, &v) in scaled.iter().enumerate() {
        mass += v;
        mx += v * (i % SIDE) as f32;
        my += v * (i / SIDE) as f32;
    }
    let (dx, dy) = (
        (13.5 - mx / mass).round() as isize,
        (13.5 - my / mass).round() as isize,
    );
    let mut out = vec![0.0f32; SIDE * SIDE];
    for y in 0..SIDE as isize {
        for x in 0..SIDE as isize {
            let (tx, ty) = (x + dx, y + dy);
            if (0..SIDE as isize).contains(&tx) && (0..SIDE as isize).contains(&ty) {
                out[ty as usize * SIDE + tx as usize] = scaled[y as usize * SIDE + x as usize];
            }
        }
    }
    out
}

/// One labelled digit of `mnist-test.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub label: u8,
    /// `image_size²` values in [0, 1] (`byte / 255`).
    pub pixels: Vec<f32>,
}

/// Parses `mnist-test.bin`: records of `[label u8][784 pixel bytes]` (see `docs/vision.md`).
pub fn read_test_set(bytes: &[u8]) -> Result<Vec<LabelledImage>> {
    const RECORD: usize = 1 + 28 * 28;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::InvalidRequest(format!(
            "a test set is whole records of {RECORD} bytes; this one has {} bytes",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, record)| {
            if record[0] > 9 {
                return Err(Error::InvalidRequest(format!(
                    "test digit {i} has label {}, not 0–9",
                    record[0]
                )));
            }
            Ok(LabelledImage {
                label: record[0],
                pixels: record[1..].iter().map(|&b| b as f32 / 255.0).collect(),
            })
        })
        .collect()
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}
