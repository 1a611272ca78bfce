//! Glassbox engine: reads GGUF weights from a byte stream, tokenizes, and runs small
//! transformers on the CPU or on WebGPU (wgpu, our own WGSL kernels), with taps that expose what
//! happens inside.
//!
//! The same code compiles natively (the `glassbox` CLI, the tests) and to wasm32 (the page).
//!
//! The modules form layers; each uses only the ones above it in this list (read it bottom-up
//! for the foundations first, top-down for what a caller holds). `docs/architecture.md` draws it.
//! - [`error`], [`rng`], [`numerics`]: errors, a seeded random source, slice math;
//! - [`gguf`]: the file format (header, streaming reader, quantized block formats, writer);
//! - [`tensor`], [`backend`]: the host tensor, the narrow op interface the models are written
//!   against, and its argument checks;
//! - [`cpu`], [`gpu`]: the two backends;
//! - [`text`]: the tokenizer and chat template from a model's metadata;
//! - [`models`]: llama, and the MNIST ViT and ViR, each written once against the interface;
//! - [`runtime`]: a loaded model, sessions and their one `feed`, sampling, and the engine
//!   handles that hide the backend from the CLI and the page;
//! - [`analysis`]: attention inspection, rollout, Set-Based Prompting.

pub mod analysis;
pub mod backend;
pub mod cpu;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod models;
pub mod numerics;
pub mod rng;
pub mod runtime;
pub mod tensor;
pub mod testing;
pub mod text;

pub use error::{Error, Result};
