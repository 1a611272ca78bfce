//! The models, one architecture per file, each written once against [`crate::backend::Backend`]:
//! the llama chat model ([`llama`], with its [`taps`]) and the MNIST classifiers ([`vision`]).

pub mod llama;
pub mod taps;
pub mod vision;
