//! The engine's side of the worker: receives [`ToWorker`] messages, runs the engine, posts
//! [`FromWorker`] messages back.
//!
//! Messages are handled one at a time by a single task that owns the engine, except `Stop`,
//! which only raises a flag the generation loop checks between tokens (it yields to the event
//! loop after each one, so the flag can be raised).

mod inspect;
pub mod js;
mod order;
mod storage;
pub mod store;
mod vision;

use crate::protocol::{
    decode, encode, BenchTimes, CacheInfo, ComputeTier, FromWorker, InspectSource, LoadProgress,
    LoadStage, ModelInfo, ReplyStats, TierChoice, ToWorker,
};
use engine::backend::Selection;
use engine::gpu::GpuBackend;
use engine::runtime::sampling::{Sampler, SamplingParams};
use engine::runtime::{Device, Engine, EngineSession, Feed};
use engine::text::chat::ChatMessage;
use engine::text::tokenizer::TokenStream;
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
            Err(e) => post(&FromWorker::Error(e)),
        }
    });
    js::scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    wasm_bindgen_futures::spawn_local(run(receiver, stop));
    post(&FromWorker::Ready);
}

pub fn post(message: &FromWorker) {
    let _ = js::scope().post_message(&JsValue::from_str(&encode(message)));
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
            ToWorker::Probe => self.probe().await,
            ToWorker::Load { tier } => self.load(tier).await,
            ToWorker::Generate {
                request,
                messages,
                params,
                max_tokens,
            } => self.generate(request, messages, params, max_tokens).await,
            ToWorker::Stop => self.stop.set(true),
            ToWorker::RunOrders {
                request,
                question,
                options,
                set_based,
                orders,
                max_tokens,
            } => {
                let run = order::OrderRun {
                    request,
                    question: &question,
                    options: &options,
                    set_based,
                    orders: &orders,
                    max_tokens,
                };
                self.run_orders(&run).await
            }
            ToWorker::Inspect { request, source } => self.inspect(request, &source).await,
            ToWorker::InspectHead { layer, head } => {
                let result = match &self.inspection {
                    Some(inspection) => inspect::head(inspection, layer, head),
                    None => Err(engine::Error::InvalidRequest("nothing is inspected".into())),
                };
                match result {
                    Ok(data) => post(&FromWorker::InspectedHead(data)),
                    Err(e) => post(&FromWorker::Error(e.to_string())),
                }
            }
            ToWorker::LogitLens { token } => {
                let result = match (&self.inspection, &self.engine) {
                    (Some(inspection), Some(engine)) => {
                        inspect::lens(inspection, engine, token).await
                    }
                    _ => Err(engine::Error::InvalidRequest("nothing is inspected".into())),
                };
                match result {
                    Ok(data) => post(&FromWorker::LogitLens(data)),
                    Err(e) => post(&FromWorker::Error(e.to_string())),
                }
            }
            ToWorker::Bench { ids, decode_tokens } => {
                let result = match self.engine() {
                    Ok(engine) => bench(engine, &ids, decode_tokens).await,
                    Err(e) => Err(e),
                };
                post(&FromWorker::BenchDone(result.map_err(|e| e.to_string())));
            }
            ToWorker::Classify {
                request,
                image,
                chunk,
            } => {
                if self.vision.is_none() {
                    match vision::VisionModels::load().await {
                        Ok(models) => self.vision = Some(models),
                        Err(e) => {
                            let result = Err(format!("the vision models did not load: {e}"));
                            post(&FromWorker::Classified { request, result });
                            return;
                        }
                    }
                }
                if let Some(models) = &self.vision {
                    let result = models.classify(&image, chunk).await;
                    post(&FromWorker::Classified { request, result });
                }
            }
            ToWorker::CacheInfo => post(&FromWorker::Cache(cache_info().await)),
            ToWorker::ClearCache => {
                let store = Store::open().await;
                if let Ok(manifest) = store::fetch_manifest(&store).await {
                    store.clear(&manifest.chat).await;
                }
                post(&FromWorker::Cache(cache_info().await));
            }
            ToWorker::SimulateDeviceLoss => {
                if let Some(gpu) = self.engine.as_ref().and_then(Engine::gpu) {
                    gpu.context().simulate_loss("simulated from the page");
                }
            }
        }
    }

    /// The chat model, or why there is none.
    fn engine(&self) -> engine::Result<&Engine> {
        self.engine
            .as_ref()
            .ok_or_else(|| engine::Error::InvalidRequest("the model is not loaded yet".into()))
    }

    async fn run_orders(&mut self, run: &order::OrderRun<'_>) {
        self.stop.set(false);
        let result = match self.engine() {
            Ok(engine) => order::run_orders(engine, run, &self.stop).await,
            Err(e) => Err(e),
        };
        let (stopped, error) = match result {
            Ok(stopped) => (stopped, None),
            Err(e) => (false, Some(e.to_string())),
        };
        post(&FromWorker::OrderDone {
            request: run.request,
            stopped,
            error,
        });
    }

    async fn inspect(&mut self, request: u32, source: &InspectSource) {
        // The previous capture goes first: two at once may not fit in memory.
        self.inspection = None;
        let result = match self.engine() {
            Ok(engine) => inspect::inspect(engine, source).await,
            Err(e) => Err(e),
        };
        let result = match result {
            Ok((inspection, summary)) => {
                self.inspection = Some(inspection);
                Ok(summary)
            }
            Err(e) => Err(e.to_string()),
        };
        post(&FromWorker::Inspected { request, result });
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
        post(&FromWorker::WebGpuAvailable(available));
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
        post(&FromWorker::Tier(tier));
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
            Ok(info) => post(&FromWorker::Loaded(ModelInfo {
                load_ms: js::now_ms() - started,
                ..info
            })),
            Err(e) => post(&FromWorker::LoadFailed {
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
        post(&FromWorker::Tier(ComputeTier::WebGpu {
            adapter: gpu.context().description(),
        }));
        let (engine, info) = load_on(Device::WebGpu(gpu)).await?;
        self.engine = Some(engine);
        Ok(info)
    }

    async fn load_cpu(&mut self, reason: &str) -> Result<ModelInfo, LoadError> {
        post(&FromWorker::Tier(ComputeTier::Cpu {
            reason: reason.to_string(),
        }));
        let (engine, info) = load_on(Device::Cpu).await?;
        self.engine = Some(engine);
        Ok(info)
    }

    async fn generate(
        &mut self,
        request: u32,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        max_tokens: usize,
    ) {
        self.stop.set(false);
        let result = match &self.engine {
            Some(engine) => {
                let chat = Chat {
                    request,
                    messages: &messages,
                    params: &params,
                    max_tokens,
                };
                reply(engine, &mut self.chat, &chat, &self.stop).await
            }
            None => Err(engine::Error::InvalidRequest(
                "the model is not loaded yet".into(),
            )),
        };
        match result {
            Ok(stats) => post(&FromWorker::Done { request, stats }),
            Err(engine::Error::Gpu(e)) => {
                // The GPU is gone: go on on the CPU with the same conversation.
                let reason = format!("the GPU failed ({e}); continuing on the CPU");
                post(&FromWorker::ReplyRestarted { request });
                self.engine = None;
                self.chat = None;
                match self.load_cpu(&reason).await {
                    Ok(info) => {
                        post(&FromWorker::Loaded(info));
                        Box::pin(self.generate(request, messages, params, max_tokens)).await;
                    }
                    Err(e) => post(&FromWorker::GenerateFailed {
                        request,
                        message: e.message,
                    }),
                }
            }
            Err(e) => post(&FromWorker::GenerateFailed {
                request,
                message: e.to_string(),
            }),
        }
    }
}

/// Loads the chat model on `device` (cache first), then warms it up.
async fn load_on(device: Device) -> Result<(Engine, ModelInfo), LoadError> {
    let store = Store::open().await;
    let manifest = store::fetch_manifest(&store).await?;
    let file = manifest.chat;
    let progress = |p: LoadProgress| post(&FromWorker::Progress(p));
    let engine = store::load_model(device, &store, &file, &progress).await?;
    post(&FromWorker::Progress(LoadProgress {
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

/// One reply to write: the conversation so far and how to sample.
struct Chat<'a> {
    request: u32,
    messages: &'a [ChatMessage],
    params: &'a SamplingParams,
    max_tokens: usize,
}

/// Answers `chat.messages` in the conversation's session (made on first use), posting each
/// piece of text as it comes.
async fn reply(
    engine: &Engine,
    session: &mut Option<EngineSession>,
    chat: &Chat<'_>,
    stop: &Cell<bool>,
) -> engine::Result<ReplyStats> {
    let request = chat.request;
    let tokenizer = engine.tokenizer();
    let template = engine
        .template()
        .ok_or_else(|| engine::Error::ChatTemplate("this model has no chat template".into()))?;
    let prompt = template.render(chat.messages, true)?;
    let ids = tokenizer.encode(&prompt)?;
    let context = PAGE_CONTEXT.min(engine.config().context_len);
    if ids.len() >= context {
        return Err(engine::Error::ContextOverflow {
            prompt: ids.len(),
            context,
        });
    }
    let session = match session {
        Some(s) => s,
        None => session.insert(engine.session(context)?),
    };
    let started = js::now_ms();
    let mut sampler = Sampler::new(chat.params.clone());
    let vocab = engine.config().vocab_size;
    // The cache already holds the conversation's common prefix: only the rest is fed.
    let first = Feed::sequence(&ids).top_k(sampler.selection(session.tokens(), vocab));
    let mut candidates = session.feed(first).await?.top;
    let first_token_ms = js::now_ms() - started;
    let decode_started = js::now_ms();
    let mut printer = TokenStream::new();
    let mut generated = 0;
    let mut stopped = false;
    loop {
        let next = sampler.pick(&candidates);
        generated += 1;
        if tokenizer.is_end_of_generation(next) {
            break;
        }
        let text = printer.push(tokenizer, next);
        if !text.is_empty() {
            post(&FromWorker::Token { request, text });
        }
        // Let Stop arrive.
        js::yield_now().await;
        if stop.get() {
            stopped = true;
            break;
        }
        if generated >= chat.max_tokens || session.tokens().len() + 1 >= context {
            break;
        }
        let next = [next];
        let feed = Feed::append(&next).top_k(sampler.selection(session.tokens(), vocab));
        candidates = session.feed(feed).await?.top;
    }
    let rest = printer.finish();
    if !rest.is_empty() {
        post(&FromWorker::Token {
            request,
            text: rest,
        });
    }
    let seconds = ((js::now_ms() - decode_started) / 1000.0).max(1e-3);
    Ok(ReplyStats {
        tokens: generated,
        tokens_per_second: generated.saturating_sub(1) as f64 / seconds,
        context_used: session.tokens().len(),
        context,
        stopped,
        first_token_ms,
    })
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
