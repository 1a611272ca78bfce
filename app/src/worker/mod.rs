//! The engine's side of the worker: receives [`ToWorker`] messages, runs the engine, posts
//! [`FromWorker`] messages back. This file routes each view's requests to its handler (`chat`,
//! `order`, `inspect`, `vision`, `lab`, `models` for the model list and check, `load` for loading)
//! and answers the engine's own: probing, the cache and the benchmark.
//!
//! A file the user opens arrives beside its message (a `{json, file}` object instead of a
//! string): its bytes are read here, in the worker, and never leave the machine.
//!
//! Messages are handled one at a time by a single task that owns the engine, except `Stop`,
//! which only raises a flag the generation loop checks between tokens (it yields to the event
//! loop after each one, so the flag can be raised).

mod chat;
mod feed;
mod inspect;
pub mod js;
mod lab;
mod lab_measures;
mod lab_prompt;
mod load;
mod models;
mod offline;
mod order;
pub mod probe;
mod storage;
pub mod store;
#[cfg(target_feature = "atomics")]
mod threads;
mod vision;

use crate::protocol::{
    decode, encode, BenchDone, BenchRequest, BenchTimes, CacheInfo, ComputeTier, EngineEvent,
    EngineRequest, FromWorker, ModelSource, ToWorker,
};
use engine::backend::Selection;
use engine::gpu::GpuBackend;
use engine::runtime::budget::ModelSummary;
use engine::runtime::{Engine, EngineSession, Feed};
use futures_channel::mpsc;
use futures_util::StreamExt;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use store::{Store, Target};
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

pub use probe::PAGE_CONTEXT;

/// A message, and the file that came beside it.
type Incoming = (ToWorker, Option<web_sys::File>);

pub fn start() {
    // A CPU thread of the threaded build instantiates this module too (`pool_worker.js`): it
    // runs no engine.
    let pool_thread = js_sys::Reflect::get(&js_sys::global(), &"glassboxPoolThread".into());
    if pool_thread.is_ok_and(|flag| flag.is_truthy()) {
        return;
    }
    #[cfg(target_feature = "atomics")]
    threads::install();
    let (sender, receiver) = mpsc::unbounded::<Incoming>();
    let stop = Rc::new(Cell::new(false));
    let stop_flag = Rc::clone(&stop);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        let (text, file) = match data.as_string() {
            Some(text) => (text, None),
            None => {
                let get = |key: &str| js_sys::Reflect::get(&data, &key.into()).ok();
                let text = get("json").and_then(|t| t.as_string());
                let file = get("file").and_then(|f| f.dyn_into::<web_sys::File>().ok());
                match text {
                    Some(text) => (text, file),
                    None => return,
                }
            }
        };
        match decode::<ToWorker>(&text) {
            Ok(ToWorker::Stop) => stop_flag.set(true),
            Ok(message) => {
                let _ = sender.unbounded_send((message, file));
            }
            Err(e) => post(FromWorker::Error(e)),
        }
    });
    js::scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    wasm_bindgen_futures::spawn_local(run(receiver, stop));
    wasm_bindgen_futures::spawn_local(offline::keep_this_build());
    post(FromWorker::Ready);
}

/// How many threads the CPU tier runs on (starts them, in the threaded build).
pub fn cpu_threads() -> usize {
    engine::cpu::pool::global().threads()
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
    /// `chat` holds only the chat's opening, fed after the load ([`Worker::prime_chat`]).
    primed: bool,
    /// The context the page gives the loaded model (its own, capped at the page's and at what
    /// fits the tier).
    context: usize,
    /// The model loaded or being loaded: where its bytes are, and how to name it again.
    target: Option<Target>,
    source: Option<ModelSource>,
    /// The last model checked, so that loading it does not read its header again.
    checked: Option<(ModelSource, Target)>,
    /// What the headers read so far say, by sha256 (for the model list).
    summaries: HashMap<String, ModelSummary>,
    /// A WebGPU device, kept from probing for the first load on that tier.
    gpu: Option<GpuBackend>,
    gpu_error: Option<String>,
    /// The adapter's (maxStorageBufferBindingSize, maxBufferSize), for memory plans.
    gpu_limits: Option<(u64, u64)>,
    stop: Rc<Cell<bool>>,
    /// The attention explorer's last capture (dropped when the model changes).
    inspection: Option<engine::analysis::inspect::Inspection>,
    /// The Vision view's models, loaded on its first request.
    vision: Option<vision::VisionModels>,
    /// The last steering vector the chat used (dropped when the model changes).
    steering: Option<lab::CachedSteering>,
    /// The user asked to run the model without keeping it (the storage was full).
    memory_only: bool,
}

async fn run(mut messages: mpsc::UnboundedReceiver<Incoming>, stop: Rc<Cell<bool>>) {
    let mut worker = Worker {
        engine: None,
        chat: None,
        primed: false,
        context: PAGE_CONTEXT,
        target: None,
        source: None,
        checked: None,
        summaries: HashMap::new(),
        gpu: None,
        gpu_error: None,
        gpu_limits: None,
        stop,
        inspection: None,
        vision: None,
        steering: None,
        memory_only: false,
    };
    while let Some((message, file)) = messages.next().await {
        worker.handle(message, file).await;
    }
}

impl Worker {
    async fn handle(&mut self, message: ToWorker, file: Option<web_sys::File>) {
        match message {
            ToWorker::Engine(request) => self.on_engine(request, file).await,
            ToWorker::Models(request) => self.on_models(request, file).await,
            ToWorker::Chat(request) => self.on_chat(request).await,
            ToWorker::Order(request) => self.on_order(request).await,
            ToWorker::Explore(request) => self.on_explore(request).await,
            ToWorker::Vision(request) => self.on_vision(request).await,
            ToWorker::Lab(request) => self.on_lab(request).await,
            ToWorker::Bench(request) => self.on_bench(request).await,
            ToWorker::Stop => self.stop.set(true),
        }
    }

    async fn on_engine(&mut self, request: EngineRequest, file: Option<web_sys::File>) {
        match request {
            EngineRequest::Probe => self.probe().await,
            EngineRequest::Load {
                tier,
                source,
                memory_only,
            } => self.load(tier, source, file, memory_only).await,
            EngineRequest::CacheInfo => post(EngineEvent::Cache(self.cache_info().await)),
            EngineRequest::ClearCache => {
                let lock = self.lock_store(false).await;
                let store = Store::open().await;
                if let Some(storage) = self.storage_name(&store).await {
                    store.clear(&storage).await;
                    store.forget_storage(&storage).await;
                }
                drop(lock);
                post(EngineEvent::Cache(self.cache_info().await));
                self.list().await;
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
                Ok(gpu) => {
                    let limits = &gpu.context().limits;
                    self.gpu_limits = Some((
                        limits.max_storage_buffer_binding_size,
                        limits.max_buffer_size,
                    ));
                    self.gpu = Some(gpu);
                }
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
                threads: cpu_threads(),
            },
        };
        post(EngineEvent::Tier(tier));
    }

    /// The storage name of the model loaded or being loaded (the default before any).
    async fn storage_name(&self, store: &Store) -> Option<String> {
        match &self.target {
            Some(target) => target.storage.clone(),
            None => store::fetch_manifest(store)
                .await
                .ok()
                .map(|m| m.chat.file.clone()),
        }
    }

    async fn cache_info(&self) -> CacheInfo {
        let store = Store::open().await;
        let bytes = match &self.target {
            Some(target) => Some(target.bytes),
            None => store::fetch_manifest(&store)
                .await
                .ok()
                .map(|m| m.chat.bytes),
        };
        let mut note = store.note();
        let (model_bytes, partial_bytes) = match (self.storage_name(&store).await, bytes) {
            (Some(storage), Some(bytes)) => match store.state(&storage, bytes).await {
                Ok(state) => state,
                Err(e) => {
                    note = Some(format!("The stored model cannot be read now ({e})."));
                    (None, None)
                }
            },
            _ => (None, None),
        };
        let estimate = js::storage_estimate().await;
        CacheInfo {
            model_bytes,
            partial_bytes,
            usage: estimate.map(|e| e.0),
            quota: estimate.map(|e| e.1),
            unavailable: store.unavailable(),
            storage: store.describe().to_string(),
            note,
        }
    }
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
