//! The engine's side of the worker: receives [`ToWorker`] messages, runs the engine, posts
//! [`FromWorker`] messages back. This file routes each view's requests to its handler (`chat`,
//! `order`, `inspect`, `vision`) and answers the engine's own: probing, loading, the cache and
//! the benchmark.
//!
//! Messages are handled one at a time by a single task that owns the engine, except `Stop`,
//! which only raises a flag the generation loop checks between tokens (it yields to the event
//! loop after each one, so the flag can be raised).

mod chat;
mod inspect;
pub mod js;
mod order;
mod storage;
pub mod store;
mod vision;

use crate::protocol::{
    decode, encode, BenchDone, BenchRequest, BenchTimes, CacheInfo, ComputeTier, EngineEvent,
    EngineRequest, FromWorker, LoadProgress, LoadStage, ModelInfo, TierChoice, ToWorker,
};
use engine::backend::Selection;
use engine::gpu::GpuBackend;
use engine::runtime::{Device, Engine, EngineSession, Feed};
use engine::text::chat::ChatMessage;
use futures_channel::mpsc;
use futures_util::StreamExt;
use std::cell::Cell;
use std::rc::Rc;
use store::{LoadError, Store};
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

/// The page keeps conversations shorter than the model's 8,192 tokens: the KV cache of the CPU
/// tier lives in wasm memory.
pub const PAGE_CONTEXT: usize = 2048;

pub fn start() {
    let (sender, receiver) = mpsc::unbounded::<ToWorker>();
    let stop = Rc::new(Cell::new(false));
    let stop_flag = Rc::clone(&stop);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        match decode::<ToWorker>(&text) {
            Ok(ToWorker::Stop) => stop_flag.set(true),
            Ok(message) => {
                let _ = sender.unbounded_send(message);
            }
            Err(e) => post(FromWorker::Error(e)),
        }
    });
    js::scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    wasm_bindgen_futures::spawn_local(run(receiver, stop));
    post(FromWorker::Ready);
}

/// Sends a message, or any group of them, to the page.
pub fn post(message: impl Into<FromWorker>) {
    let message: FromWorker = message.into();
    let _ = js::scope().post_message(&JsValue::from_str(&encode(&message)));
}

struct Worker {
    /// The chat model, on whichever tier it was loaded.
    engine: Option<Engine>,
    /// The conversation's KV cache on `engine`.
    chat: Option<EngineSession>,
    /// A WebGPU device, kept from probing for the first load on that tier.
    gpu: Option<GpuBackend>,
    gpu_error: Option<String>,
    stop: Rc<Cell<bool>>,
    /// The attention explorer's last capture (dropped when the model changes).
    inspection: Option<engine::analysis::inspect::Inspection>,
    /// The Vision view's models, loaded on its first request.
    vision: Option<vision::VisionModels>,
}

async fn run(mut messages: mpsc::UnboundedReceiver<ToWorker>, stop: Rc<Cell<bool>>) {
    let mut worker = Worker {
        engine: None,
        chat: None,
        gpu: None,
        gpu_error: None,
        stop,
        inspection: None,
        vision: None,
    };
    while let Some(message) = messages.next().await {
        worker.handle(message).await;
    }
}

impl Worker {
    async fn handle(&mut self, message: ToWorker) {
        match message {
            ToWorker::Engine(request) => self.on_engine(request).await,
            ToWorker::Chat(request) => self.on_chat(request).await,
            ToWorker::Order(request) => self.on_order(request).await,
            ToWorker::Explore(request) => self.on_explore(request).await,
            ToWorker::Vision(request) => self.on_vision(request).await,
            ToWorker::Bench(request) => self.on_bench(request).await,
            ToWorker::Stop => self.stop.set(true),
        }
    }

    async fn on_engine(&mut self, request: EngineRequest) {
        match request {
            EngineRequest::Probe => self.probe().await,
            EngineRequest::Load { tier } => self.load(tier).await,
            EngineRequest::CacheInfo => post(EngineEvent::Cache(cache_info().await)),
            EngineRequest::ClearCache => {
                let store = Store::open().await;
                if let Ok(manifest) = store::fetch_manifest(&store).await {
                    store.clear(&manifest.chat).await;
                }
                post(EngineEvent::Cache(cache_info().await));
            }
            EngineRequest::SimulateDeviceLoss => {
                if let Some(gpu) = self.engine.as_ref().and_then(Engine::gpu) {
                    gpu.context().simulate_loss("simulated from the page");
                }
            }
        }
    }

    async fn on_bench(&mut self, request: BenchRequest) {
        let BenchRequest {
            request,
            ids,
            decode_tokens,
        } = request;
        let result = match self.engine() {
            Ok(engine) => bench(engine, &ids, decode_tokens).await,
            Err(e) => Err(e),
        };
        post(BenchDone {
            request,
            result: result.map_err(|e| e.to_string()),
        });
    }

    /// The chat model, or why there is none.
    fn engine(&self) -> engine::Result<&Engine> {
        self.engine
            .as_ref()
            .ok_or_else(|| engine::Error::InvalidRequest("the model is not loaded yet".into()))
    }

    async fn probe(&mut self) {
        if self.gpu.is_none() && self.gpu_error.is_none() {
            match GpuBackend::create().await {
                Ok(gpu) => self.gpu = Some(gpu),
                Err(e) => self.gpu_error = Some(e.to_string()),
            }
        }
        let available =
            self.gpu.is_some() || self.engine.as_ref().is_some_and(|e| e.gpu().is_some());
        post(EngineEvent::WebGpuAvailable(available));
        let tier = match (&self.gpu, &self.gpu_error) {
            (Some(gpu), _) => ComputeTier::WebGpu {
                adapter: gpu.context().description(),
            },
            (None, error) => ComputeTier::Cpu {
                reason: error
                    .clone()
                    .unwrap_or_else(|| "WebGPU is not available".into()),
            },
        };
        post(EngineEvent::Tier(tier));
    }

    async fn load(&mut self, choice: TierChoice) {
        if self.gpu.is_none() && self.gpu_error.is_none() {
            self.probe().await;
        }
        let started = js::now_ms();
        self.engine = None;
        self.chat = None;
        self.inspection = None;
        let result = match choice {
            TierChoice::Cpu => self.load_cpu("you chose the CPU").await,
            TierChoice::Auto | TierChoice::WebGpu => match self.take_gpu().await {
                Some(gpu) => self.load_gpu(gpu).await,
                None => {
                    let reason = self
                        .gpu_error
                        .clone()
                        .unwrap_or_else(|| "WebGPU is not available".into());
                    self.load_cpu(&reason).await
                }
            },
        };
        match result {
            Ok(info) => post(EngineEvent::Loaded(ModelInfo {
                load_ms: js::now_ms() - started,
                ..info
            })),
            Err(e) => post(EngineEvent::LoadFailed {
                message: e.message,
                retry: e.retry,
            }),
        }
    }

    /// The probed device, or a new one (after a previous GPU engine was dropped).
    async fn take_gpu(&mut self) -> Option<GpuBackend> {
        if let Some(gpu) = self.gpu.take() {
            return Some(gpu);
        }
        match GpuBackend::create().await {
            Ok(gpu) => Some(gpu),
            Err(e) => {
                self.gpu_error = Some(e.to_string());
                None
            }
        }
    }

    async fn load_gpu(&mut self, gpu: GpuBackend) -> Result<ModelInfo, LoadError> {
        post(EngineEvent::Tier(ComputeTier::WebGpu {
            adapter: gpu.context().description(),
        }));
        let (engine, info) = load_on(Device::WebGpu(gpu)).await?;
        self.engine = Some(engine);
        Ok(info)
    }

    async fn load_cpu(&mut self, reason: &str) -> Result<ModelInfo, LoadError> {
        post(EngineEvent::Tier(ComputeTier::Cpu {
            reason: reason.to_string(),
        }));
        let (engine, info) = load_on(Device::Cpu).await?;
        self.engine = Some(engine);
        Ok(info)
    }
}

/// Loads the chat model on `device` (cache first), then warms it up.
async fn load_on(device: Device) -> Result<(Engine, ModelInfo), LoadError> {
    let store = Store::open().await;
    let manifest = store::fetch_manifest(&store).await?;
    let file = manifest.chat;
    let progress = |p: LoadProgress| post(EngineEvent::Progress(p));
    let engine = store::load_model(device, &store, &file, &progress).await?;
    post(EngineEvent::Progress(LoadProgress {
        stage: LoadStage::WarmUp,
        bytes: file.bytes,
        total: file.bytes,
        bytes_per_second: 0.0,
        tensors_loaded: 0,
        tensors_total: 0,
    }));
    js::yield_now().await;
    // One token through every kernel: compiles the GPU pipelines now rather than at the first
    // question.
    let bos = [engine.tokenizer().bos_id.unwrap_or(0)];
    engine
        .session(8)?
        .feed(Feed::append(&bos).top_k(Selection::greedy()))
        .await?;
    let info = ModelInfo {
        name: file.name.clone(),
        context: PAGE_CONTEXT.min(engine.config().context_len),
        bytes: file.bytes,
        sha256: file.sha256.clone(),
        default_system_prompt: default_system_prompt(&engine),
        load_ms: 0.0,
    };
    Ok((engine, info))
}

/// The system prompt the chat template adds when the conversation has none.
fn default_system_prompt(engine: &Engine) -> Option<String> {
    let template = engine.template()?;
    let with = template
        .render(&[ChatMessage::new("user", "x")], false)
        .ok()?;
    let marker = "<|im_start|>system\n";
    let start = with.find(marker)? + marker.len();
    let end = with[start..].find("<|im_end|>")? + start;
    Some(with[start..end].to_string())
}

/// Prefill of `ids` in a fresh session, then greedy steps, timed as `glassbox bench` times the
/// native engine (no yielding to the event loop between steps, unlike a chat reply).
async fn bench(engine: &Engine, ids: &[u32], decode_tokens: usize) -> engine::Result<BenchTimes> {
    let mut session = engine.session(ids.len() + decode_tokens + 1)?;
    let greedy = |fed: engine::runtime::Fed| {
        fed.top
            .first()
            .map(|&(id, _)| id)
            .ok_or_else(|| engine::Error::InvalidRequest("no next token".into()))
    };
    let started = js::now_ms();
    let mut next = greedy(
        session
            .feed(Feed::append(ids).top_k(Selection::greedy()))
            .await?,
    )?;
    let prefill_ms = js::now_ms() - started;
    let started = js::now_ms();
    for _ in 0..decode_tokens {
        let step = [next];
        next = greedy(
            session
                .feed(Feed::append(&step).top_k(Selection::greedy()))
                .await?,
        )?;
    }
    Ok(BenchTimes {
        backend: engine.backend_name(),
        prompt_tokens: ids.len(),
        decode_tokens,
        prefill_ms,
        decode_ms: js::now_ms() - started,
    })
}

async fn cache_info() -> CacheInfo {
    let store = Store::open().await;
    let (model_bytes, partial_bytes) = match store::fetch_manifest(&store).await {
        Ok(manifest) => store.state(&manifest.chat).await,
        Err(_) => (None, None),
    };
    let estimate = js::storage_estimate().await;
    CacheInfo {
        model_bytes,
        partial_bytes,
        usage: estimate.map(|e| e.0),
        quota: estimate.map(|e| e.1),
        unavailable: store.unavailable(),
        storage: store.describe().to_string(),
    }
}
