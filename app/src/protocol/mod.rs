//! The messages between the page and its engine worker: one enum each way, grouped per view,
//! sent as JSON. (A file the user opens travels beside its message as a `File`: the engine
//! client's `send_with_file`.) The model list's and the model check's messages are in
//! `models.rs`.

mod lab;
mod models;

pub use lab::{
    AblationResult, AttributionResult, LabReply, LabRequest, OutlierResult, PatchingResult,
    PrecisionRunResult, SteeringChoice, TokenChance, CUSTOM_PAIR,
};
pub use models::{ModelCheck, ModelEntry, ModelReply, ModelRequest, ModelSource};

use engine::runtime::budget::ModelSummary;
use engine::runtime::sampling::SamplingParams;
use engine::text::chat::ChatMessage;
use serde::{Deserialize, Serialize};

/// Page → worker: one group per view, and the engine's own requests.
///
/// Every request whose answer a view waits for carries a `request` id the page chose; every
/// reply to it carries the same id, so the page can drop the replies to requests it no longer
/// waits for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    Engine(EngineRequest),
    Models(ModelRequest),
    Chat(ChatRequest),
    Order(OrderRequest),
    Explore(ExploreRequest),
    Vision(VisionRequest),
    Lab(LabRequest),
    Bench(BenchRequest),
    /// Stop the chat reply, the order run, the patching sweep or the model download under way (a partial reply
    /// stays; a partial download is kept for a resume). Not queued: the worker raises a flag
    /// that the running loop checks between tokens or chunks.
    Stop,
}

/// The chat model and its cache, whichever view uses them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineRequest {
    /// Find the compute tiers this browser offers and report them.
    Probe,
    /// Load a chat model (from the browser's cache, or the network, resuming a partial
    /// download, or a file) on the given tier; `None`: the model loaded now (or being loaded),
    /// else the default.
    Load {
        tier: TierChoice,
        source: Option<ModelSource>,
        /// Keep nothing in the browser's storage (the user chose this after it was full).
        #[serde(default)]
        memory_only: bool,
    },
    /// Report what is cached of the model loaded (or being loaded) and how much storage the
    /// origin uses.
    CacheInfo,
    /// Delete the stored copy of the model loaded (or being loaded).
    ClearCache,
    /// Mark the GPU device as lost, as a real loss would (for tests and demonstrations of the
    /// CPU fallback).
    SimulateDeviceLoss,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChatRequest {
    /// Answer the conversation: `messages` end with the user's turn. Answered by
    /// [`ChatReply`]s.
    Generate {
        request: u32,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        max_tokens: usize,
        /// Steer the reply (the Lab's steering control); `None`: as the model is.
        #[serde(default)]
        steering: Option<SteeringChoice>,
        /// What the conversation's cache keeps: under a policy that evicts, the conversation
        /// is not fitted to the context (the policy evicts instead).
        #[serde(default)]
        policy: engine::runtime::AttentionPolicy,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OrderRequest {
    /// Answer a multiple-choice question under each of `orders` (orderings of `options`), with
    /// Set-Based Prompting or plainly; a separate KV cache, the chat's stays. Answered by
    /// [`OrderReply`]s.
    Run {
        request: u32,
        question: String,
        options: Vec<String>,
        set_based: bool,
        orders: Vec<Vec<usize>>,
        max_tokens: usize,
    },
}

/// The attention explorer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExploreRequest {
    /// Run `source` once with every tap on and keep the captures in the worker; answers
    /// [`ExploreReply::Inspected`]. Views then ask for pieces of it.
    Inspect { request: u32, source: InspectSource },
    /// One head of the kept inspection: answers [`ExploreReply::Head`].
    Head {
        request: u32,
        layer: usize,
        head: usize,
    },
    /// The logit lens at one token of the kept inspection: answers [`ExploreReply::Lens`].
    Lens { request: u32, token: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VisionRequest {
    /// Classify a 28 × 28 image (values in [0, 1]) with the ViT and the ViR, the ViR in every
    /// form; answers [`VisionReply::Classified`]. The first request loads both models (a few
    /// hundred kB).
    Classify {
        request: u32,
        image: Vec<f32>,
        /// Chunk length of the ViR's chunkwise form.
        chunk: usize,
    },
}

/// Benchmark (`cargo xtask bench-compare`): prefill `ids` in a fresh session, then
/// `decode_tokens` greedy steps; answers [`BenchDone`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRequest {
    pub request: u32,
    pub ids: Vec<u32>,
    pub decode_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TierChoice {
    /// WebGPU if an adapter exists, else the CPU.
    Auto,
    WebGpu,
    Cpu,
}

/// Worker → page, grouped like [`ToWorker`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker's wasm is running and listens: messages sent before this would be lost.
    Ready,
    Engine(EngineEvent),
    Models(ModelReply),
    Chat(ChatReply),
    Order(OrderReply),
    Explore(ExploreReply),
    Vision(VisionReply),
    Lab(LabReply),
    Bench(BenchDone),
    /// Something failed outside any request (a message the worker could not read); the text is
    /// for people.
    Error(String),
}

/// What the engine is and does now. These carry no request id: they report the engine's
/// state, which changes unasked too (a GPU lost in the middle of a reply reloads the model on
/// the CPU), and the page shows the latest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineEvent {
    /// The tier the engine uses now (after probing, loading or a fallback).
    Tier(ComputeTier),
    /// Whether this browser has a WebGPU adapter at all (for the tier switch).
    WebGpuAvailable(bool),
    Progress(LoadProgress),
    /// The model is loaded and warmed up.
    Loaded(Box<ModelInfo>),
    /// Loading failed; `retry` says whether trying again may help (a cut download resumes);
    /// `offer_memory`, that the storage is full and the model could run from memory instead.
    LoadFailed {
        message: String,
        retry: bool,
        #[serde(default)]
        offer_memory: bool,
    },
    /// The load waits for another tab (which holds the store's Web Lock); the text says so.
    Waiting(String),
    Cache(CacheInfo),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChatReply {
    /// The next piece of a reply's text (possibly empty while a character is incomplete).
    Token { request: u32, text: String },
    /// A reply ended.
    Done { request: u32, stats: ReplyStats },
    /// The reply starts over (after a fallback to the CPU): drop its text so far.
    Restarted { request: u32 },
    /// Generation failed; the conversation is unchanged.
    Failed { request: u32, message: String },
    /// Nothing was generated: the conversation and room for the reply do not fit the
    /// `context`; leaving out its `dropped` oldest messages (after the system prompt) would.
    TooLong {
        request: u32,
        dropped: usize,
        context: usize,
    },
    /// Nothing was generated: the last message alone does not fit the context (with room for
    /// a reply); it should not stay in the conversation.
    Refused { request: u32, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OrderReply {
    /// The prompt of an order run as laid out for its first ordering.
    Layout { request: u32, layout: OrderLayout },
    /// The answer under one ordering.
    Answer {
        request: u32,
        order: Vec<usize>,
        answer: String,
    },
    /// An order run ended (all orderings answered, stopped, or failed with `error`).
    Done {
        request: u32,
        stopped: bool,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExploreReply {
    /// An inspection is ready (or `Err`: why not).
    Inspected {
        request: u32,
        result: Result<InspectionSummary, String>,
    },
    Head {
        request: u32,
        result: Result<HeadData, String>,
    },
    Lens {
        request: u32,
        result: Result<LensData, String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VisionReply {
    Classified {
        request: u32,
        result: Result<VisionReport, String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchDone {
    pub request: u32,
    pub result: Result<BenchTimes, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ComputeTier {
    /// A WebGPU adapter, with its description.
    WebGpu { adapter: String },
    /// The engine runs on the CPU in wasm, on `threads` threads; `reason` says why (or that
    /// the user chose it).
    Cpu { reason: String, threads: usize },
}

impl ComputeTier {
    /// What run cards record: "WebGPU (adapter description)" or "CPU (wasm)" (threads change
    /// no result, so they are not part of it).
    pub fn label(&self) -> String {
        match self {
            ComputeTier::WebGpu { adapter } => format!("WebGPU ({adapter})"),
            ComputeTier::Cpu { .. } => "CPU (wasm)".to_string(),
        }
    }

    /// What the status line shows: the label, and for the CPU how many threads run
    /// ("CPU (wasm) · 2 threads").
    pub fn status(&self) -> String {
        match self {
            ComputeTier::Cpu { threads: 1, .. } => format!("{} · 1 thread", self.label()),
            ComputeTier::Cpu { threads, .. } => format!("{} · {threads} threads", self.label()),
            ComputeTier::WebGpu { .. } => self.label(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadStage {
    /// Reading the model's header to plan its memory.
    Header,
    /// Reading the model back from the browser's cache.
    Cache,
    /// Downloading (new or resumed).
    Download,
    /// Reading a file the user opened.
    Disk,
    /// Compiling kernels and running a first token.
    WarmUp,
}

impl LoadStage {
    pub fn label(self) -> &'static str {
        match self {
            LoadStage::Header => "Reading the model's header",
            LoadStage::Cache => "Reading the cached model",
            LoadStage::Download => "Downloading the model",
            LoadStage::Disk => "Reading the file",
            LoadStage::WarmUp => "Warming up",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadProgress {
    pub stage: LoadStage,
    pub bytes: u64,
    pub total: u64,
    /// Bytes per second over the stage so far.
    pub bytes_per_second: f64,
    pub tensors_loaded: usize,
    pub tensors_total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    /// The context the page gives it.
    pub context: usize,
    pub bytes: u64,
    pub sha256: String,
    pub default_system_prompt: Option<String>,
    /// Milliseconds the whole load took.
    pub load_ms: f64,
    /// How to load it again (by its sha256; a URL model keeps its URL), for deep links.
    pub source: ModelSource,
    /// What its header says: architecture, shape (layers, heads, local layers), licence.
    pub summary: ModelSummary,
    pub licence_url: Option<String>,
    /// It has no chat template: the chat view continues text instead of answering.
    pub completion: bool,
    /// The sha256 was checked against one known beforehand (the manifest's, the link's, the
    /// user's); otherwise it was only computed from the bytes.
    pub sha256_checked: bool,
    /// Something worth saying about the load (why it runs on the CPU, why the context is short).
    pub note: Option<String>,
    /// Why the model's own chat template cannot be used (the chat uses a plain format).
    #[serde(default)]
    pub template_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyStats {
    pub tokens: usize,
    pub tokens_per_second: f64,
    /// Tokens the conversation holds now, and the most it can hold.
    pub context_used: usize,
    pub context: usize,
    pub stopped: bool,
    /// Milliseconds until the first token of the reply.
    pub first_token_ms: f64,
    /// The reply was cut where the context ends.
    #[serde(default)]
    pub cut: bool,
    /// Under a policy that evicts: the conversation's tokens and which the cache holds.
    #[serde(default)]
    pub cache: Option<KeptTokens>,
}

/// Every token the conversation fed (its labels) and, per token, whether the cache still
/// holds it; `evicted` counts those it does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptTokens {
    pub tokens: Vec<String>,
    pub kept: Vec<bool>,
    pub evicted: usize,
}

/// What the Order view draws: each token with its position id and origin, and the mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLayout {
    /// Readable token texts.
    pub tokens: Vec<String>,
    pub positions: Vec<u32>,
    /// For each token, the option it belongs to (`None`: question or template text).
    pub members: Vec<Option<usize>>,
    /// Row-major `(tokens, tokens)`: whether token i may attend to token j.
    pub visible: Vec<bool>,
}

/// What a [`BenchRequest`] measured, in milliseconds of the worker's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchTimes {
    pub backend: String,
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// What the attention explorer inspects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InspectSource {
    /// Raw text (special tokens parsed, no chat template), causal.
    Text(String),
    /// A conversation through the chat template, ending with the reply to inspect.
    Chat(Vec<ChatMessage>),
    /// The Order view's prompt for its options in the given order, set-based or plain.
    Order {
        question: String,
        options: Vec<String>,
        set_based: bool,
    },
}

/// The whole of an inspection that the page needs at once; heads come on request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionSummary {
    pub ids: Vec<u32>,
    /// Each token as the explorer labels it.
    pub tokens: Vec<String>,
    pub positions: Vec<u32>,
    /// Row-major `(t, t)`: whether token i may attend to token j.
    pub visible: Vec<bool>,
    pub n_layers: usize,
    pub n_heads: usize,
    /// The model view: `(layers, heads, side, side)` bytes, `255·√weight` (max per block).
    pub thumbnail_side: usize,
    pub thumbnails: Vec<u8>,
    /// Attention rollout, `(t, t)`.
    pub rollout: Vec<f32>,
    /// How long the captured forward pass and the read-back took.
    pub capture_ms: f64,
}

/// One head's attention, `(t, t)` row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadData {
    pub layer: usize,
    pub head: usize,
    pub probs: Vec<f32>,
    /// Before the softmax; `None` where the mask hides the key.
    pub scores: Vec<Option<f32>>,
}

/// The logit lens at one token: per layer, the top next tokens as (label, probability).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensData {
    pub token: usize,
    pub layers: Vec<Vec<(String, f32)>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The cached model's verified size, if a verified copy is stored.
    pub model_bytes: Option<u64>,
    /// A partial download waiting to be resumed.
    pub partial_bytes: Option<u64>,
    pub usage: Option<f64>,
    pub quota: Option<f64>,
    /// Why nothing can be cached, where that is so.
    pub unavailable: Option<String>,
    /// What holds the cache: "Origin Private File System" or "Cache API".
    pub storage: String,
    /// Why a better store is not used, or why the stored copy cannot be read now.
    #[serde(default)]
    pub note: Option<String>,
}

/// One model's answer for one image, and what the Vision view draws of its insides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionOutput {
    pub probs: Vec<f32>,
    pub class: usize,
    pub n_heads: usize,
    /// Per block, per head: the class token's row over the 49 patches, `(layers, heads, 49)`:
    /// attention weights (ViT) or retention scores (ViR).
    pub class_rows: Vec<Vec<Vec<f32>>>,
    /// ViT: the class token's attention rollout over the patches (49).
    pub rollout: Vec<f32>,
}

/// The ViR's output computed by one retention form, and what that form cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormRun {
    /// "Parallel", "Recurrent", "Chunkwise (16)".
    pub form: String,
    pub probs: Vec<f32>,
    pub class: usize,
    /// Largest |logit − the parallel form's logit|.
    pub max_logit_diff: f32,
    /// Median over a few runs of the whole classification, milliseconds.
    pub ms: f64,
    /// Floats the retention of one layer holds at once (score matrices or states).
    pub floats_held: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionReport {
    pub vit: VisionOutput,
    /// The ViR, parallel form (the captures come from it).
    pub vir: VisionOutput,
    /// The ViR's decay per head.
    pub decays: Vec<f32>,
    pub forms: Vec<FormRun>,
    /// Where the vision models run.
    pub backend: String,
    /// (file, sha256) of each vision model, for run cards.
    pub models: Vec<(String, String)>,
}

/// Each group converts into its side's message, so that senders can write
/// `send(ChatRequest::Generate { … })` and `post(ChatReply::Token { … })`.
macro_rules! groups {
    ($message:ident { $($group:ident => $variant:ident),* $(,)? }) => {
        $(impl From<$group> for $message {
            fn from(group: $group) -> Self {
                $message::$variant(group)
            }
        })*
    };
}

groups!(ToWorker {
    EngineRequest => Engine,
    ModelRequest => Models,
    ChatRequest => Chat,
    OrderRequest => Order,
    ExploreRequest => Explore,
    VisionRequest => Vision,
    LabRequest => Lab,
    BenchRequest => Bench,
});

groups!(FromWorker {
    EngineEvent => Engine,
    ModelReply => Models,
    ChatReply => Chat,
    OrderReply => Order,
    ExploreReply => Explore,
    VisionReply => Vision,
    LabReply => Lab,
    BenchDone => Bench,
});

pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_else(|e| format!("{{\"Error\":\"encode: {e}\"}}"))
}

pub fn decode<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("bad message from the other side: {e}"))
}
