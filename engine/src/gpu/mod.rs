//! WebGPU through wgpu: the device context, and our WGSL kernels (one family per file in
//! `kernels/`, each with a CPU twin).
//!
//! Setup (adapter, device) is kept apart from work, so tests and callers can share one device.
//! The backend is split by concern: `context` (adapter, device, loss), `buffers` (activation
//! pool, weights, KV caches), `recording` (encoder, upload arena, dispatch, read-back) with
//! `profiler` (per-family timings), `kernels` (the registry and its uniforms), and `ops` (each
//! family's dispatches), which `backend` ties into the `Backend` trait.

mod backend;
mod buffers;
mod context;
pub mod kernels;
mod ops;
mod profiler;
mod recording;

pub use backend::GpuBackend;
pub use buffers::{GpuCache, GpuMatrix, GpuTensor};
pub use context::{GpuContext, GpuError};
pub use recording::WorkCounts;
