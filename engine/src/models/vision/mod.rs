//! The MNIST classifiers: a ViT ([`vit`]) and a ViR ([`vir`]), built from shared parts
//! ([`parts`]), and [`VisionModel`], the one type the CLI and the page hold.

pub mod mnist;
pub mod parts;
pub mod vir;
pub mod vit;

pub use mnist::{center_like_mnist, read_test_set, LabelledImage};
pub use parts::{patch_rows, VisionArch, VisionConfig};

use crate::backend::{Backend, RetentionForm};
use crate::error::{Error, Result};
use crate::gguf::{GgufEvent, GgufHeader, GgufStream, Limits};
use crate::numerics::{argmax, softmax};
use parts::VisionWeights;
use std::sync::Arc;
use vir::Vir;
use vit::Vit;

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

    /// The most probable class.
    pub fn top(&self) -> usize {
        argmax(&self.logits) as usize
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
        let mut weights = VisionWeights::new();
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
