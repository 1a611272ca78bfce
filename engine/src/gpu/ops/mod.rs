//! The backend's ops, by kernel family: each records its dispatches (uniform, bindings,
//! workgroup grid) as an inherent method of [`GpuBackend`](super::GpuBackend), which the
//! `Backend` impl in `backend.rs` calls.

mod attention;
mod elementwise;
mod embedding;
mod matmul;
mod norms;
mod retention;
mod rope;
mod select;
