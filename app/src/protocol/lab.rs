//! The Lab's messages: head ablation (the next-token distribution before and after, and one
//! head's attention under the ablation) and the activation-patching sweep. Steering rides on
//! the chat's own request ([`super::ChatRequest::Generate`]'s `steering`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LabRequest {
    /// Runs `prompt` plainly and with `heads` (layer, head) zero-ablated; answers
    /// [`LabReply::Ablated`] with both distributions and head `shown`'s attention under the
    /// ablation.
    Ablate {
        request: u32,
        prompt: String,
        heads: Vec<(usize, usize)>,
        shown: (usize, usize),
    },
    /// The patching sweep of `corrupt` with `clean`'s residual stream: answers
    /// [`LabReply::PatchProgress`] after each patched run and [`LabReply::Patched`] at the end.
    /// Stop ends it between two runs.
    Patch {
        request: u32,
        clean: String,
        corrupt: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LabReply {
    Ablated {
        request: u32,
        result: Result<AblationResult, String>,
    },
    PatchProgress {
        request: u32,
        done: usize,
        total: usize,
    },
    /// The sweep ended: its result, why it failed, or that it was stopped (`Err` says so).
    Patched {
        request: u32,
        result: Result<PatchingResult, String>,
    },
}

/// A candidate next token: its label, its probability in the run it is listed for, and in the
/// other run (so the page can show the change per token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenChance {
    pub token: String,
    pub probability: f32,
    pub other: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationResult {
    /// The prompt's tokens, as the explorer labels them.
    pub tokens: Vec<String>,
    pub n_layers: usize,
    pub n_heads: usize,
    /// The heads ablated in `after` (as asked, checked against the model).
    pub heads: Vec<(usize, usize)>,
    /// The top next tokens without interventions (`other`: with the ablation).
    pub before: Vec<TokenChance>,
    /// The top next tokens with the ablation (`other`: without).
    pub after: Vec<TokenChance>,
    /// The head shown, and its attention under the ablation, `(t, t)` row-major.
    pub shown: (usize, usize),
    pub attention: Vec<f32>,
    /// Both runs and the read-back, in milliseconds.
    pub ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchingResult {
    pub clean_ids: Vec<u32>,
    pub corrupt_ids: Vec<u32>,
    pub clean_tokens: Vec<String>,
    pub corrupt_tokens: Vec<String>,
    /// The clean run's most likely next token, whose log-prob the sweep measures.
    pub target: String,
    pub target_id: u32,
    pub clean_logprob: f32,
    pub corrupt_logprob: f32,
    /// `effect[layer][token]`: the target's log-prob in the corrupted run with the residual
    /// after block `layer` at `token` taken from the clean run.
    pub effect: Vec<Vec<f32>>,
    /// The whole sweep, in milliseconds of the worker's clock.
    pub sweep_ms: f64,
    /// Where it ran ("CPU", "WebGPU …").
    pub backend: String,
}

/// The chat reply's steering: `alpha` times the `pair`'s steering vector added after block
/// `layer` at every token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringChoice {
    pub pair: String,
    pub layer: usize,
    pub alpha: f32,
}
