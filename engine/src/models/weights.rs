//! The weights of a model being loaded, by GGUF name: each uploaded to the backend as soon as
//! the stream hands it out (on WebGPU the upload overlaps the download), then taken by name when
//! the model file assembles itself.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::TensorData;
use std::collections::HashMap;

pub struct Weights<B: Backend> {
    matrices: HashMap<String, B::Matrix>,
    vectors: HashMap<String, B::Tensor>,
}

impl<B: Backend> Default for Weights<B> {
    fn default() -> Self {
        Weights {
            matrices: HashMap::new(),
            vectors: HashMap::new(),
        }
    }
}

impl<B: Backend> Weights<B> {
    /// Uploads one tensor: 1-D tensors are norm gains, the rest matrices.
    pub fn accept(&mut self, backend: &B, tensor: TensorData) -> Result<()> {
        let TensorData { info, bytes } = tensor;
        if info.dims.len() == 1 {
            let v = backend.upload_vector(&info, &bytes)?;
            self.vectors.insert(info.name, v);
        } else {
            let m = backend.upload_matrix(&info, bytes)?;
            self.matrices.insert(info.name, m);
        }
        Ok(())
    }

    /// The matrix `name`; a missing one is an error naming it.
    pub fn matrix(&mut self, name: String) -> Result<B::Matrix> {
        self.matrices.remove(&name).ok_or_else(|| missing(&name))
    }

    /// The 1-D weight `name`; a missing one is an error naming it.
    pub fn vector(&mut self, name: String) -> Result<B::Tensor> {
        self.vectors.remove(&name).ok_or_else(|| missing(&name))
    }
}

fn missing(name: &str) -> Error {
    Error::BadModel(format!("tensor {name} is missing"))
}
