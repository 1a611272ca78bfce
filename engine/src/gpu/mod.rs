//! WebGPU through wgpu: the device context, and our WGSL kernels (one family per file in
//! `kernels/`, each with a CPU twin).
//!
//! Setup (adapter, device) is kept apart from work, so tests and callers can share one device.

mod backend;
mod context;
pub mod kernels;

pub use backend::{GpuBackend, GpuCache, GpuMatrix, GpuTensor};
pub use context::{GpuContext, GpuError};
