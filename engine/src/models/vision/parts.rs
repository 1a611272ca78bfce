//! What the two MNIST classifiers share: their configuration (read from GGUF keys), the patch
//! stem, the GELU MLP, the classification head and the weights by name. The exact computation
//! is written down in `docs/vision.md`, which the trainer (`trainer/`) follows too.
//!
//! Layout shared by both models: 49 patches of 4 × 4 in raster order, then the class token
//! LAST (so causal retention lets it see every patch); the class token is the last row of the
//! learned position table, its patch row being all zeros.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::blocks::dequantize_to_vec;
use crate::gguf::{GgmlType, GgufHeader, TensorData, TensorInfo};
use std::collections::HashMap;

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
    pub(crate) fn new() -> Self {
        VisionWeights {
            matrices: HashMap::new(),
            vectors: HashMap::new(),
        }
    }

    pub(crate) fn accept(&mut self, backend: &B, tensor: &TensorData) -> Result<()> {
        let info = &tensor.info;
        if info.name == "pos_embd.weight" {
            // A table added to the activations, not a matrix multiplied with them.
            let values = dequantize_to_vec(info.ggml_type, &tensor.bytes);
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
            let values = dequantize_to_vec(info.ggml_type, &tensor.bytes);
            let wide = TensorInfo {
                ggml_type: GgmlType::F32,
                n_bytes: (values.len() * 4) as u64,
                ..info.clone()
            };
            let m = backend.upload_matrix(&wide, bytemuck::cast_slice(&values).to_vec())?;
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
