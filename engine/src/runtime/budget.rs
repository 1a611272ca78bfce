//! What a model is and what it needs, from its GGUF header alone (the first bytes of the file,
//! before the weights are downloaded): a summary for the model list ([`ModelSummary`]), and the
//! memory it needs on each tier for a context length, against what a device offers ([`plan`]).
//!
//! The numbers are estimates of the allocations this engine makes (weights as the backends keep
//! them, the KV cache, the largest transient buffers of a forward pass), not measurements; they
//! are meant to say plainly, before any download, whether a model will run and with how long a
//! context.

use crate::gguf::GgufHeader;
use crate::models::decoder::read_config;
use crate::models::shape::ModelConfig;
use serde::{Deserialize, Serialize};

/// Prompts are fed in pieces of this many tokens (see `runtime::session`).
const PREFILL_CHUNK: u64 = 512;
/// wasm32 addresses 4 GiB; the engine's own code, the tokenizer and the page take some of it.
const WASM_ADDRESS_SPACE: u64 = 4 << 30;
const WASM_RESERVE: u64 = 512 << 20;

/// What the model list shows of a GGUF.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// `general.name`, or the architecture.
    pub name: String,
    /// `general.architecture`, supported or not.
    pub architecture: String,
    /// Tensor types and how many tensors of each, most common first.
    pub types: Vec<(String, usize)>,
    pub parameters: u64,
    /// Bytes of the whole file (header and data).
    pub file_bytes: u64,
    /// `general.license`.
    pub license: Option<String>,
    pub has_chat_template: bool,
    /// The model's shape, where Glassbox runs it.
    pub config: Option<ModelConfig>,
    /// Why Glassbox cannot run it, where that is so (the architecture, a tensor's shape…).
    pub problem: Option<String>,
}

impl ModelSummary {
    pub fn from_header(header: &GgufHeader) -> Self {
        let architecture = header
            .get_str("general.architecture")
            .unwrap_or("unknown")
            .to_string();
        let mut types: Vec<(String, usize)> = Vec::new();
        for t in &header.tensors {
            let name = t.ggml_type.name().to_string();
            match types.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => types.push((name, 1)),
            }
        }
        types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (config, problem) = match read_config(header) {
            Ok(config) => (Some(config), None),
            Err(e) => (None, Some(e.to_string())),
        };
        ModelSummary {
            name: header
                .get_str("general.name")
                .unwrap_or(&architecture)
                .to_string(),
            types,
            parameters: header.tensors.iter().map(|t| t.n_elements()).sum(),
            file_bytes: header.file_len(),
            license: header.get_str("general.license").ok().map(str::to_string),
            has_chat_template: header.get_str("tokenizer.chat_template").is_ok(),
            architecture,
            config,
            problem,
        }
    }
}

/// Where a model may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    Cpu,
    WebGpu,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::Cpu => "CPU",
            Tier::WebGpu => "WebGPU",
        }
    }
}

/// Bytes a model needs on a tier for one context length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// The weights as the tier keeps them.
    pub weights: u64,
    /// Keys and values of every layer.
    pub kv_cache: u64,
    /// The largest transient buffers of a forward pass (activations, scores, logits).
    pub scratch: u64,
    /// The largest single buffer (a WebGPU binding must hold it).
    pub largest_buffer: u64,
}

impl Needs {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch
    }
}

/// What a device offers; `None` where the platform does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLimits {
    /// Memory the CPU tier may use (the machine's, `navigator.deviceMemory` in a page).
    pub memory: Option<u64>,
    /// The CPU tier runs in wasm32 (4 GiB of address space).
    pub wasm32: bool,
    /// WebGPU's `maxStorageBufferBindingSize`, where an adapter exists.
    pub max_binding: Option<u64>,
    /// WebGPU's `maxBufferSize`.
    pub max_buffer: Option<u64>,
    /// Free browser storage, for keeping the file.
    pub storage_free: Option<u64>,
}

/// One tier's verdict for a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierPlan {
    pub tier: Tier,
    /// What it needs at the asked context.
    pub needs: Needs,
    /// The longest context that fits (0: the model does not fit at all; `None`: unknown limit).
    pub max_context: Option<usize>,
    /// In words: "runs with the full 2,048-token context", "does not fit: …".
    pub verdict: String,
}

/// What will work, in words and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub context: usize,
    pub tiers: Vec<TierPlan>,
    /// Whether the browser storage can keep the file (`None`: unknown).
    pub storage_fits: Option<bool>,
}

/// Bytes the weights take on `tier`: the file's blocks as they are (on WebGPU, repacked so each
/// block starts on 4 bytes), 1-D tensors widened to f32. Also the largest piece that must sit
/// in one buffer: a 1-D tensor whole, a matrix one row (the WebGPU backend splits matrices into
/// parts of whole rows that each fit a binding).
fn weight_bytes(header: &GgufHeader, tier: Tier) -> (u64, u64) {
    let mut total = 0;
    let mut largest = 0;
    for t in &header.tensors {
        let bytes = if t.dims.len() == 1 {
            t.n_elements() * 4
        } else {
            match tier {
                // Each block padded to a multiple of 4 bytes.
                Tier::WebGpu => {
                    let block = t.ggml_type.block_bytes();
                    t.n_bytes / block * block.div_ceil(4) * 4
                }
                Tier::Cpu => t.n_bytes,
            }
        };
        total += bytes;
        let rows: u64 = t.dims.iter().skip(1).product();
        largest = largest.max(bytes / rows.max(1));
    }
    (total, largest)
}

/// What the model needs on `tier` for `context` tokens.
pub fn needs(header: &GgufHeader, config: &ModelConfig, tier: Tier, context: usize) -> Needs {
    let ctx = context as u64;
    let layers = config.n_layers as u64;
    let kv_width = (config.n_kv_heads * config.head_dim) as u64;
    let per_layer_cache = 2 * kv_width * ctx * 4;
    let (weights, largest_weight) = weight_bytes(header, tier);
    let chunk = PREFILL_CHUNK.min(ctx);
    let widest = (config.d_model.max(config.ffn_dim) + 2 * config.n_heads * config.head_dim) as u64;
    let scores = config.n_heads as u64 * chunk * ctx * 4;
    let logits = config.vocab_size as u64 * 4;
    // A few activations of the widest layer at once, the scores of one layer, the logits.
    let scratch = 4 * chunk * widest * 4 + scores + logits;
    Needs {
        weights,
        kv_cache: layers * per_layer_cache,
        scratch,
        largest_buffer: largest_weight.max(per_layer_cache / 2).max(scores),
    }
}

/// Whether `needs` fits what `limits` offers on `tier`; `Err` says why not.
fn fits(needs: &Needs, tier: Tier, limits: &DeviceLimits) -> Result<(), String> {
    let mib = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
    match tier {
        Tier::Cpu => {
            if limits.wasm32 && needs.total() > WASM_ADDRESS_SPACE - WASM_RESERVE {
                return Err(format!(
                    "needs {}, more than wasm's 4 GiB address space allows",
                    mib(needs.total())
                ));
            }
            if let Some(memory) = limits.memory {
                if needs.total() > memory {
                    return Err(format!(
                        "needs {} of the {} of memory this device reports",
                        mib(needs.total()),
                        mib(memory)
                    ));
                }
            }
        }
        Tier::WebGpu => {
            let Some(binding) = limits.max_binding else {
                return Err("this browser has no WebGPU adapter".into());
            };
            let buffer = limits.max_buffer.unwrap_or(binding);
            if needs.largest_buffer > binding.min(buffer) {
                return Err(format!(
                    "its largest buffer is {}; this adapter binds at most {}",
                    mib(needs.largest_buffer),
                    mib(binding.min(buffer))
                ));
            }
        }
    }
    Ok(())
}

/// Which tier runs the model with `context` tokens, the longest context each allows, and
/// whether the file fits the browser's storage.
pub fn plan(
    header: &GgufHeader,
    config: &ModelConfig,
    context: usize,
    limits: &DeviceLimits,
) -> Plan {
    let context = context.clamp(1, config.context_len);
    let tiers = [Tier::WebGpu, Tier::Cpu]
        .into_iter()
        .map(|tier| {
            let at = |ctx: usize| needs(header, config, tier, ctx);
            let asked = at(context);
            let max_context = match fits(&at(1), tier, limits) {
                Err(_) => Some(0),
                Ok(()) => {
                    // The needs grow with the context: the longest that fits, by bisection.
                    let (mut lo, mut hi) = (1usize, config.context_len);
                    while lo < hi {
                        let mid = lo + (hi - lo).div_ceil(2);
                        if fits(&at(mid), tier, limits).is_ok() {
                            lo = mid;
                        } else {
                            hi = mid - 1;
                        }
                    }
                    Some(lo)
                }
            };
            let verdict = match (fits(&asked, tier, limits), max_context) {
                (Ok(()), _) => format!(
                    "runs with a {context}-token context ({:.0} MB)",
                    asked.total() as f64 / 1e6
                ),
                (Err(why), Some(0)) => format!("does not fit: {why}"),
                (Err(why), Some(max)) => {
                    format!("runs with at most {max} tokens of context ({why} at {context})")
                }
                (Err(why), None) => format!("does not fit: {why}"),
            };
            TierPlan {
                tier,
                needs: asked,
                max_context,
                verdict,
            }
        })
        .collect();
    Plan {
        context,
        tiers,
        storage_fits: limits.storage_free.map(|free| header.file_len() <= free),
    }
}
