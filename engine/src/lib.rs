//! Glassbox engine: reads GGUF weights from a byte stream, tokenizes, and runs small
//! transformers on the CPU (candle-core) or on WebGPU (wgpu, our own WGSL kernels), with taps
//! that expose what happens inside.
//!
//! The same code compiles natively (the `glassbox` CLI, the tests) and to wasm32 (the page).

pub mod backend;
pub mod chat;
pub mod cpu;
mod error;
pub mod gguf;
pub mod gpu;
pub mod inspect;
pub mod language_model;
pub mod models;
pub mod rng;
pub mod sampling;
pub mod set_prompt;
pub mod testing;
pub mod tokenizer;

pub use error::{Error, Result};
