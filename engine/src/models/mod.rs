//! The models, one architecture per file, each written once against [`crate::backend::Backend`].

pub mod llama;
