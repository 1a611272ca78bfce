//! [`Pass`]: how a language model's forward pass runs besides its input: what it captures,
//! what it changes, and in which precision the activations meet the weights.

use super::interventions::Interventions;
use super::taps::Taps;

/// The precision of the activations in the matrix products.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activations {
    /// f32 when the pass taps or intervenes (captured and intervened values are compared with
    /// each other and across backends), else the backend's fastest.
    #[default]
    Auto,
    /// f32 throughout (see [`crate::backend::Backend::matmul_exact`]).
    F32,
    /// The backend's fastest products, taps and interventions or not (the CPU's quantize
    /// activations to 16 bits: within 0.002 log-prob of f32). Long sweeps of many runs that
    /// compare only with each other use this.
    Fastest,
}

#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    pub taps: Taps,
    pub interventions: &'a Interventions,
    pub activations: Activations,
}

impl Pass<'_> {
    /// Whether the matrix products keep activations in f32.
    pub fn exact(&self) -> bool {
        match self.activations {
            Activations::Auto => self.taps.any() || !self.interventions.is_empty(),
            Activations::F32 => true,
            Activations::Fastest => false,
        }
    }
}
