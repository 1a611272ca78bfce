//! A plain host tensor: f32 values and a `(rows, cols)` shape, row-major. The CPU backend's
//! activations are these, and so is anything read back from a backend.
//!
//! Deliberately small: the models only ever need 2-D activations `(tokens, features)`, and every
//! op the CPU backend runs works on the slice directly, so there is nothing for a general tensor
//! library to add here.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensor {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Tensor {
    /// `data` row-major; its length must be `rows · cols`.
    pub fn new(data: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::InvalidRequest(format!(
                "a {rows} × {cols} tensor needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        Ok(Tensor { data, rows, cols })
    }

    /// One row.
    pub fn row_vector(data: Vec<f32>) -> Self {
        let cols = data.len();
        Tensor {
            data,
            rows: 1,
            cols,
        }
    }

    pub fn zeros(rows: usize, cols: usize) -> Self {
        Tensor {
            data: vec![0.0; rows * cols],
            rows,
            cols,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Row `i` (checked by the caller).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The last `n` rows (all of them if there are fewer), as a new tensor.
    pub fn last_rows(&self, n: usize) -> Tensor {
        let n = n.min(self.rows);
        Tensor {
            data: self.data[(self.rows - n) * self.cols..].to_vec(),
            rows: n,
            cols: self.cols,
        }
    }

    /// A tensor of the same shape, each value `f(self, other)` (shapes checked by the caller).
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
        Tensor {
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// A tensor of the same shape, each value `f(self)`.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor {
            data: self.data.iter().map(|&a| f(a)).collect(),
            rows: self.rows,
            cols: self.cols,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tensor;

    #[test]
    fn shape_is_checked_and_last_rows_clamps() {
        assert!(Tensor::new(vec![0.0; 5], 2, 3).is_err());
        assert!(Tensor::new(vec![0.0; 6], usize::MAX, 2).is_err());
        let t = Tensor::new((0..6).map(|v| v as f32).collect(), 3, 2).unwrap();
        assert_eq!(t.last_rows(1).data(), [4.0, 5.0]);
        assert_eq!(t.last_rows(9).dims(), (3, 2));
    }
}
