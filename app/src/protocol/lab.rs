//! The Lab's messages: head ablation (the next-token distribution before and after, and one
//! head's attention under the ablation), direct logit attribution, outlier features and the
//! activation-patching sweep. Steering rides on the chat's own request
//! ([`super::ChatRequest::Generate`]'s `steering`).

pub use engine::analysis::outliers::OutlierDimension;
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
    /// Splits the logit of `target` (`None`: the most likely next token) after `prompt` into
    /// the embedding's, each head's and each MLP's parts: answers [`LabReply::Attributed`].
    Attribute {
        request: u32,
        prompt: String,
        target: Option<u32>,
    },
    /// Measures `prompt`'s residual-stream magnitudes and runs it in three precisions:
    /// answers [`LabReply::OutliersMeasured`].
    MeasureOutliers { request: u32, prompt: String },
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
    Attributed {
        request: u32,
        result: Result<AttributionResult, String>,
    },
    OutliersMeasured {
        request: u32,
        result: Result<OutlierResult, String>,
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
    /// The token's id (what the attribution's target names).
    #[serde(default)]
    pub id: u32,
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

/// The next token's logit split into parts (see `engine::analysis::attribution`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionResult {
    pub tokens: Vec<String>,
    pub target_id: u32,
    pub target: String,
    /// The target's logit in the forward pass, and the sum of the parts (equal up to rounding).
    pub logit: f32,
    pub total: f32,
    pub embedding: f32,
    /// `heads[layer][head]`.
    pub heads: Vec<Vec<f32>>,
    /// One per layer.
    pub mlps: Vec<f32>,
    pub ms: f64,
}

/// A run of the prompt in one precision: its five most likely next tokens with their
/// log-probs, and its largest log-prob drift from the f32 run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRunResult {
    /// "f32", "8-bit" or "8-bit, outliers wide".
    pub name: String,
    pub top: Vec<(String, f32)>,
    pub max_logprob_drift: f32,
}

/// Outlier features (see `engine::analysis::outliers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierResult {
    pub tokens: Vec<String>,
    /// `magnitudes[layer][dimension]`: the largest |value| over the prompt's tokens.
    pub magnitudes: Vec<Vec<f32>>,
    /// The dimensions that stand out, largest first.
    pub outliers: Vec<OutlierDimension>,
    /// f32, 8-bit per block, 8-bit with outliers wide.
    pub runs: Vec<PrecisionRunResult>,
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
/// `layer` at every token. The pair [`CUSTOM_PAIR`] is the user's own prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringChoice {
    pub pair: String,
    pub layer: usize,
    pub alpha: f32,
    /// For [`CUSTOM_PAIR`]: the prompts to steer towards and away from.
    #[serde(default)]
    pub positive: Vec<String>,
    #[serde(default)]
    pub negative: Vec<String>,
}

/// The steering pair whose prompts the user writes.
pub const CUSTOM_PAIR: &str = "custom";
