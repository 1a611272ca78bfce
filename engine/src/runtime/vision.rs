//! The vision handle: a ViT or a ViR loaded on the CPU or on WebGPU behind one type, as
//! [`super::engine::Engine`] is for the chat model.

use super::engine::Device;
use crate::backend::{Backend, RetentionForm};
use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::gguf::GgufHeader;
use crate::gpu::GpuBackend;
use crate::models::vision::{Classification, VisionConfig, VisionModel};
use std::sync::Arc;

// One per loaded model, never copied around: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum VisionKind {
    Cpu(CpuBackend, VisionModel<CpuBackend>),
    Gpu(GpuBackend, VisionModel<GpuBackend>),
}

/// A vision classifier on a device.
pub struct VisionEngine {
    kind: VisionKind,
    header: Arc<GgufHeader>,
}

impl VisionEngine {
    /// Parses a whole vision GGUF (a few hundred kB) and uploads its weights to `device`.
    pub fn load(device: Device, bytes: &[u8]) -> Result<Self> {
        let (header, kind) = match device {
            Device::Cpu => {
                let backend = CpuBackend::new();
                let (header, model) = VisionModel::load(&backend, bytes)?;
                (header, VisionKind::Cpu(backend, model))
            }
            Device::WebGpu(backend) => {
                let (header, model) = VisionModel::load(&backend, bytes)?;
                (header, VisionKind::Gpu(backend, model))
            }
        };
        Ok(VisionEngine { kind, header })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(device: Device, path: &std::path::Path) -> Result<Self> {
        Self::load(device, &std::fs::read(path)?)
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    pub fn config(&self) -> &VisionConfig {
        match &self.kind {
            VisionKind::Cpu(_, m) => m.config(),
            VisionKind::Gpu(_, m) => m.config(),
        }
    }

    /// "CPU" or "WebGPU (adapter)".
    pub fn backend_name(&self) -> String {
        match &self.kind {
            VisionKind::Cpu(b, _) => b.name(),
            VisionKind::Gpu(b, _) => b.name(),
        }
    }

    /// See [`VisionModel::classify`].
    pub async fn classify(
        &self,
        image: &[f32],
        form: RetentionForm,
        capture: bool,
    ) -> Result<Classification> {
        match &self.kind {
            VisionKind::Cpu(b, m) => m.classify(b, image, form, capture).await,
            VisionKind::Gpu(b, m) => m.classify(b, image, form, capture).await,
        }
    }
}
