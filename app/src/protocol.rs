//! The messages between the page and its engine worker: one enum each way, sent as JSON.

use serde::{Deserialize, Serialize};

/// Page → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Find the best compute tier and report it.
    Probe,
}

/// Worker → page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker's wasm is running and listens: messages sent before this would be lost.
    Ready,
    /// The compute tier the engine will use.
    Tier(ComputeTier),
    /// Something failed; the text is for people.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ComputeTier {
    /// A WebGPU adapter, with its description.
    WebGpu { adapter: String },
    /// No usable WebGPU: the engine runs on the CPU in wasm; `reason` says why.
    Cpu { reason: String },
}

impl ComputeTier {
    /// What the page shows: "WebGPU (adapter description)" or "CPU (wasm)".
    pub fn label(&self) -> String {
        match self {
            ComputeTier::WebGpu { adapter } => format!("WebGPU ({adapter})"),
            ComputeTier::Cpu { .. } => "CPU (wasm)".to_string(),
        }
    }
}

pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_else(|e| format!("{{\"Error\":\"encode: {e}\"}}"))
}

pub fn decode<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("bad message from the other side: {e}"))
}
