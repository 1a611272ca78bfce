//! [`Pass`]: how a language model's forward pass runs besides its input: what it captures,
//! what it changes, and in which precision the activations meet the weights.

use super::interventions::Interventions;
use super::taps::Taps;

#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    pub taps: Taps,
    pub interventions: &'a Interventions,
    /// Keep activations in f32 through every matrix product (see
    /// [`crate::backend::Backend::matmul_exact`]). Captured values and intervened runs are
    /// compared with each other and across backends, so any pass that taps or intervenes runs
    /// this way whatever this says.
    pub f32_activations: bool,
}

impl<'a> Pass<'a> {
    /// Nothing captured, nothing changed, the backend's fastest products.
    pub fn plain(interventions: &'a Interventions) -> Self {
        Pass {
            taps: Taps::default(),
            interventions,
            f32_activations: false,
        }
    }

    /// Whether the matrix products keep activations in f32.
    pub fn exact(&self) -> bool {
        self.f32_activations || self.taps.any() || !self.interventions.is_empty()
    }
}
