//! The engine handle: a chat model loaded on the CPU or on WebGPU behind one type, so that the
//! CLI and the page worker never match on the backend themselves.
//!
//! Everything below the handle is generic over [`Backend`] (the model, the session); the handle
//! picks the backend once, when the model is loaded, and dispatches every call in one place
//! (the `on_backend!` macro). A session shares its model through an `Rc`, so it can only ever
//! run on the model it was made from.

use super::language_model::{LanguageModel, LanguageModelLoader, LoadProgress};
use super::policy::AttentionPolicy;
use super::session::{Fed, Feed, Session};
use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::gguf::GgufHeader;
use crate::gpu::GpuBackend;
use crate::models::shape::ModelConfig;
use crate::text::chat::ChatTemplate;
use crate::text::tokenizer::Tokenizer;
use std::rc::Rc;

/// Where a model runs.
// Made once per load and moved into the model: the size of the WebGPU variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Device {
    Cpu,
    /// A WebGPU device (natively: Vulkan), already created.
    WebGpu(GpuBackend),
}

impl Device {
    /// The WebGPU device if one can be had, with the reason if not.
    pub async fn webgpu() -> std::result::Result<Device, crate::gpu::GpuError> {
        Ok(Device::WebGpu(GpuBackend::create().await?))
    }
}

/// A model with the backend it lives on.
struct Loaded<B: Backend> {
    backend: B,
    model: LanguageModel<B>,
}

#[derive(Clone)]
enum EngineKind {
    Cpu(Rc<Loaded<CpuBackend>>),
    Gpu(Rc<Loaded<GpuBackend>>),
}

/// A chat model loaded on a device; cheap to clone (the weights are shared).
#[derive(Clone)]
pub struct Engine(EngineKind);

/// Runs `$body` with `$loaded` bound to the backend-specific value inside `$kind`, whichever
/// backend it is: the only place that matches on the backend.
macro_rules! on_backend {
    ($kind:expr, $enum:ident, ($($field:pat),+) => $body:expr) => {
        match $kind {
            $enum::Cpu($($field),+) => $body,
            $enum::Gpu($($field),+) => $body,
        }
    };
}

impl Engine {
    /// A model already loaded on the CPU.
    pub fn on_cpu(backend: CpuBackend, model: LanguageModel<CpuBackend>) -> Self {
        Engine(EngineKind::Cpu(Rc::new(Loaded { backend, model })))
    }

    /// A model already loaded on WebGPU.
    pub fn on_gpu(backend: GpuBackend, model: LanguageModel<GpuBackend>) -> Self {
        Engine(EngineKind::Gpu(Rc::new(Loaded { backend, model })))
    }

    /// Loads a GGUF file from disk onto `device` through the streaming reader.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(device: Device, path: &std::path::Path) -> Result<Self> {
        Ok(match device {
            Device::Cpu => {
                let backend = CpuBackend::new();
                let model = LanguageModel::load_file(&backend, path)?;
                Engine::on_cpu(backend, model)
            }
            Device::WebGpu(backend) => {
                let model = LanguageModel::load_file(&backend, path)?;
                Engine::on_gpu(backend, model)
            }
        })
    }

    /// "CPU" or "WebGPU (adapter)".
    pub fn backend_name(&self) -> String {
        on_backend!(&self.0, EngineKind, (l) => l.backend.name())
    }

    /// The WebGPU backend, when the model runs there (profiling, memory, simulated loss).
    pub fn gpu(&self) -> Option<&GpuBackend> {
        match &self.0 {
            EngineKind::Gpu(l) => Some(&l.backend),
            EngineKind::Cpu(_) => None,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        on_backend!(&self.0, EngineKind, (l) => &l.model.tokenizer)
    }

    /// The chat template, if the model has one that renders.
    pub fn template(&self) -> Option<&ChatTemplate> {
        on_backend!(&self.0, EngineKind, (l) => l.model.template.as_ref())
    }

    /// Why the model's own chat template cannot be used, when it has one that fails.
    pub fn template_error(&self) -> Option<&str> {
        on_backend!(&self.0, EngineKind, (l) => l.model.template_error.as_deref())
    }

    pub fn header(&self) -> &GgufHeader {
        on_backend!(&self.0, EngineKind, (l) => &l.model.header)
    }

    pub fn config(&self) -> &ModelConfig {
        on_backend!(&self.0, EngineKind, (l) => l.model.config())
    }

    /// The model's own name (`general.name`).
    pub fn name(&self) -> String {
        on_backend!(&self.0, EngineKind, (l) => l.model.name())
    }

    /// A new conversation holding up to `capacity` tokens (at most the model's context).
    pub fn session(&self, capacity: usize) -> Result<EngineSession> {
        Ok(EngineSession(match &self.0 {
            EngineKind::Cpu(l) => {
                SessionKind::Cpu(Rc::clone(l), Session::new(&l.model, &l.backend, capacity)?)
            }
            EngineKind::Gpu(l) => {
                SessionKind::Gpu(Rc::clone(l), Session::new(&l.model, &l.backend, capacity)?)
            }
        }))
    }

    /// [`Engine::logits_of_residuals`] with f32 activations (attribution sums its parts).
    pub async fn logits_of_residuals_exact(&self, rows: &[f32], n: usize) -> Result<Vec<f32>> {
        on_backend!(&self.0, EngineKind, (l) => {
            let residual = l.backend.tensor(rows, n, l.model.config().d_model)?;
            l.backend.read(&l.model.decoder.logits_exact(&l.backend, &residual)?).await
        })
    }

    /// The epsilon of the model's final RMS norm.
    pub fn rms_eps(&self) -> f32 {
        on_backend!(&self.0, EngineKind, (l) => l.model.decoder.rms_eps())
    }

    /// The residual stream before the first block for `ids`, `(n, d)` row-major.
    pub async fn embeddings(&self, ids: &[u32]) -> Result<Vec<f32>> {
        on_backend!(&self.0, EngineKind,
            (l) => l.backend.read(&l.model.decoder.embed(&l.backend, ids)?).await)
    }

    /// What `n` head-output rows (`(n, heads·head_dim)` row-major) add to the residual stream
    /// in block `layer`: `(n, d)`, in f32.
    pub async fn project_heads(&self, layer: usize, rows: &[f32], n: usize) -> Result<Vec<f32>> {
        on_backend!(&self.0, EngineKind, (l) => {
            let c = l.model.config();
            let rows = l.backend.tensor(rows, n, c.n_heads * c.head_dim)?;
            l.backend.read(&l.model.decoder.project_heads(&l.backend, layer, &rows)?).await
        })
    }

    /// `(n, vocab)` logits of `n` residual-stream rows (see
    /// [`LanguageModel::logits_of_residuals`]).
    pub async fn logits_of_residuals(&self, rows: &[f32], n: usize) -> Result<Vec<f32>> {
        on_backend!(&self.0, EngineKind,
            (l) => l.model.logits_of_residuals(&l.backend, rows, n).await)
    }
}

enum SessionKind {
    Cpu(Rc<Loaded<CpuBackend>>, Session<CpuBackend>),
    Gpu(Rc<Loaded<GpuBackend>>, Session<GpuBackend>),
}

/// A conversation on an [`Engine`]: its KV cache and the tokens it holds.
pub struct EngineSession(SessionKind);

impl EngineSession {
    /// See [`Session::feed`].
    pub async fn feed(&mut self, feed: Feed<'_>) -> Result<Fed> {
        on_backend!(&mut self.0, SessionKind,
            (l, s) => s.feed(&l.model, &l.backend, feed).await)
    }

    pub fn tokens(&self) -> &[u32] {
        on_backend!(&self.0, SessionKind, (_, s) => s.tokens())
    }

    pub fn positions(&self) -> &[u32] {
        on_backend!(&self.0, SessionKind, (_, s) => s.positions())
    }

    pub fn capacity(&self) -> usize {
        on_backend!(&self.0, SessionKind, (_, s) => s.capacity())
    }

    pub fn next_position(&self) -> u32 {
        on_backend!(&self.0, SessionKind, (_, s) => s.next_position())
    }

    /// Forgets everything from token `len` on.
    pub fn truncate(&mut self, len: usize) {
        on_backend!(&mut self.0, SessionKind, (l, s) => s.truncate(&l.backend, len))
    }

    /// See [`Session::set_policy`].
    pub fn set_policy(&mut self, policy: AttentionPolicy) -> Result<()> {
        on_backend!(&mut self.0, SessionKind, (l, s) => s.set_policy(&l.backend, policy))
    }

    pub fn policy(&self) -> AttentionPolicy {
        on_backend!(&self.0, SessionKind, (_, s) => s.policy())
    }

    /// See [`Session::evicted`].
    pub fn evicted(&self) -> usize {
        on_backend!(&self.0, SessionKind, (_, s) => s.evicted())
    }

    /// See [`Session::history`].
    pub fn history(&self) -> &[u32] {
        on_backend!(&self.0, SessionKind, (_, s) => s.history())
    }

    /// See [`Session::held_at`].
    pub fn held_at(&self) -> &[usize] {
        on_backend!(&self.0, SessionKind, (_, s) => s.held_at())
    }
}

// One per load, never copied around: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum LoaderKind {
    Cpu(CpuBackend, LanguageModelLoader<CpuBackend>),
    Gpu(GpuBackend, LanguageModelLoader<GpuBackend>),
}

/// Builds an [`Engine`] from a GGUF byte stream: each tensor goes to the device as soon as its
/// bytes are complete (on WebGPU the upload overlaps the download).
pub struct EngineLoader {
    kind: LoaderKind,
    total_bytes: Option<u64>,
}

impl EngineLoader {
    pub fn new(device: Device, total_bytes: Option<u64>) -> Self {
        let kind = match device {
            Device::Cpu => {
                LoaderKind::Cpu(CpuBackend::new(), LanguageModelLoader::new(total_bytes))
            }
            Device::WebGpu(gpu) => LoaderKind::Gpu(gpu, LanguageModelLoader::new(total_bytes)),
        };
        EngineLoader { kind, total_bytes }
    }

    /// Drops whatever was loaded and starts again from the first byte, on the same device
    /// (a cached copy turned out corrupt, a partial download was unusable).
    pub fn restart(&mut self) {
        let total = self.total_bytes;
        on_backend!(&mut self.kind, LoaderKind, (_, l) => *l = LanguageModelLoader::new(total))
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<LoadProgress> {
        on_backend!(&mut self.kind, LoaderKind, (b, l) => l.push(b, chunk))
    }

    pub fn progress(&self) -> LoadProgress {
        on_backend!(&self.kind, LoaderKind, (_, l) => l.progress())
    }

    /// The model's shape, known once the header has arrived.
    pub fn config(&self) -> Option<&ModelConfig> {
        on_backend!(&self.kind, LoaderKind, (_, l) => l.config())
    }

    /// The header, once it has arrived and passed the architecture's checks.
    pub fn header(&self) -> Option<&std::sync::Arc<GgufHeader>> {
        on_backend!(&self.kind, LoaderKind, (_, l) => l.header())
    }

    pub fn finish(self) -> Result<Engine> {
        Ok(match self.kind {
            LoaderKind::Cpu(backend, loader) => Engine::on_cpu(backend, loader.finish()?),
            LoaderKind::Gpu(backend, loader) => Engine::on_gpu(backend, loader.finish()?),
        })
    }
}
