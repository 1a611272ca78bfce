//! What every language model shares, whatever its architecture: its shape as the runtime and
//! the analysis see it ([`ModelConfig`]), one step of input ([`Step`]), and the checks each
//! architecture's loader runs on a header before a weight is read ([`validate`]): each tensor
//! the model needs is present with the shape its config implies (a header whose numbers
//! disagree with its tensors would otherwise index out of bounds later), and every number is
//! finite and in range.

use crate::backend::Mask;
use crate::error::{Error, Result};
use crate::gguf::GgufHeader;

/// The longest context any model may ask for, whatever its metadata says: the KV cache is
/// allocated for the context a session asks for, and a header is not trusted to size it.
pub const MAX_CONTEXT: usize = 1 << 17;

/// The language model architectures Glassbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Architecture {
    Llama,
    Gemma3,
}

impl Architecture {
    /// The `general.architecture` value, or an error that names it and the supported ones.
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        match header.get_str("general.architecture")? {
            "llama" => Ok(Architecture::Llama),
            "gemma3" => Ok(Architecture::Gemma3),
            other => Err(Error::UnsupportedArchitecture(format!(
                "{other} (Glassbox runs llama and gemma3)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Gemma3 => "gemma3",
        }
    }
}

/// A language model's shape, as the runtime and the analysis see it whatever its architecture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    /// The context the model was trained for, capped at [`MAX_CONTEXT`].
    pub context_len: usize,
    /// Local layers attend only to keys less than this many positions back.
    pub sliding_window: Option<usize>,
    /// Per layer: whether it is a local (sliding-window) layer.
    pub local_layers: Vec<bool>,
}

/// One forward pass's input: new tokens, where they stand, and what they may see.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub ids: &'a [u32],
    /// The position of each new token.
    pub positions: &'a [u32],
    /// The positions of the tokens already in the cache, in cache order (a sliding window
    /// measures distances in positions).
    pub cached_positions: &'a [u32],
    /// Which keys (cached, then new) each new token may see.
    pub mask: &'a Mask,
}

impl Step<'_> {
    /// [`Step::mask`] narrowed to keys less than `window` positions behind each query; the mask
    /// itself when no pair is that far apart (so short prompts keep the causal fast path).
    pub fn windowed_mask(&self, window: usize) -> Mask {
        let (t, cached) = (self.ids.len(), self.cached_positions.len());
        let total = cached + t;
        let key_position = |j: usize| {
            i64::from(
                self.cached_positions
                    .get(j)
                    .copied()
                    .unwrap_or_else(|| self.positions.get(j - cached).copied().unwrap_or(0)),
            )
        };
        let newest = self.positions.iter().copied().max().map_or(0, i64::from);
        let oldest = (0..total).map(key_position).min().unwrap_or(0);
        if newest - oldest < window as i64 {
            return self.mask.clone();
        }
        let rows = (0..t)
            .flat_map(|i| (0..total).map(move |j| (i, j)))
            .map(|(i, j)| {
                self.mask.visible(i, j, cached, total)
                    && i64::from(self.positions[i]) - key_position(j) < window as i64
            })
            .collect();
        Mask::Explicit(rows)
    }
}

/// The checks every architecture's config passes before anything is built from it.
pub mod validate {
    use crate::error::{Error, Result};
    use crate::gguf::GgufHeader;

    fn bad(message: String) -> Error {
        Error::BadModel(message)
    }

    /// A whole number the header must have, within `1..=max`.
    pub fn count(header: &GgufHeader, key: &str, max: usize) -> Result<usize> {
        let value = header.get_u64(key)?;
        if value == 0 || value > max as u64 {
            return Err(bad(format!("{key} is {value}; expected 1 to {max}")));
        }
        Ok(value as usize)
    }

    /// An optional whole number, within `1..=max` when present.
    pub fn optional_count(header: &GgufHeader, key: &str, max: usize) -> Result<Option<usize>> {
        match header.get(key) {
            None => Ok(None),
            Some(_) => count(header, key, max).map(Some),
        }
    }

    /// The context length the header names, capped at [`super::MAX_CONTEXT`].
    pub fn context(header: &GgufHeader, key: &str) -> Result<usize> {
        match header.get_u64(key)? {
            0 => Err(bad(format!("{key} is 0"))),
            n => Ok(n.min(super::MAX_CONTEXT as u64) as usize),
        }
    }

    /// A finite number within `range`, or `default` when the key is absent.
    pub fn number(
        header: &GgufHeader,
        key: &str,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<f32> {
        let value = match header.get(key) {
            None => default,
            Some(_) => header.get_f64(key)?,
        };
        if !value.is_finite() || !range.contains(&value) {
            return Err(bad(format!(
                "{key} is {value}; expected a number from {} to {}",
                range.start(),
                range.end()
            )));
        }
        Ok(value as f32)
    }

    /// Each `(name, dims)` the model needs is a tensor of the header with exactly those dims
    /// (ggml order); `optional` ones may be missing.
    pub fn tensors(header: &GgufHeader, expected: &[(String, Vec<u64>, bool)]) -> Result<()> {
        for (name, dims, optional) in expected {
            match header.tensor(name) {
                None if *optional => {}
                None => return Err(bad(format!("tensor {name} is missing"))),
                Some(info) if &info.dims != dims => {
                    return Err(bad(format!(
                        "tensor {name} has shape {:?}; this model's config needs {dims:?}",
                        info.dims
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_hides_keys_too_far_back_and_nothing_else() {
        let positions = [3u32, 4];
        let cached = [0u32, 1, 2];
        let step = Step {
            ids: &[7, 8],
            positions: &positions,
            cached_positions: &cached,
            mask: &Mask::Causal,
        };
        // Window 2: query at 3 sees 2, 3; query at 4 sees 3, 4.
        let rows = step.windowed_mask(2).to_rows(2, 3);
        assert_eq!(
            rows,
            [
                [false, false, true, true, false],
                [false, false, false, true, true]
            ]
            .concat()
        );
        // A window wider than every distance leaves the causal mask as it is.
        assert_eq!(step.windowed_mask(5), Mask::Causal);
    }
}
