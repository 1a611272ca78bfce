//! The models, one architecture per file, each written once against [`crate::backend::Backend`].

pub mod llama;
pub mod vir;
pub mod vision;
pub mod vit;
