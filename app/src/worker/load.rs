//! Loading a chat model: whichever the page asked for (the default, one named by its sha256, a
//! URL, a file), on WebGPU or the CPU. The header's memory plan is checked for the tier before
//! the weights arrive; a model WebGPU cannot hold or run loads on the CPU instead, and the page
//! is told why. Stop cancels a load between chunks (a partial download stays for a resume).
//!
//! One tab at a time downloads or reads the stored model: a load holds the Web Lock
//! [`STORE_LOCK`] (`navigator.locks`, shared by every tab and worker of the origin); a tab that
//! finds it taken says so and goes on once it is free (by then, usually, from the verified copy
//! the other tab stored). A load the user asked to run from memory keeps nothing.

use super::feed::{self, cancelled, Hooks, LoadedBytes};
use super::js::LockGuard;
use super::store::{self, LoadError, Origin, Store, Target};
use super::{js, post, probe, Worker, PAGE_CONTEXT};
use crate::protocol::{
    ComputeTier, EngineEvent, LoadProgress, LoadStage, ModelInfo, ModelSource, TierChoice,
};
use engine::backend::Selection;
use engine::gguf::GgufHeader;
use engine::gpu::GpuBackend;
use engine::runtime::budget::{ModelSummary, Tier};
use engine::runtime::{Device, Engine, Feed};
use engine::text::chat::ChatMessage;
use std::cell::Cell;

/// The Web Lock a load holds while it reads or writes the stored model.
pub const STORE_LOCK: &str = "glassbox-model-store";

impl Worker {
    /// Loads `source` (`None`: the model loaded now, else the default) on the tier chosen,
    /// falling back to the CPU where WebGPU cannot run it; posts `Loaded` or `LoadFailed`.
    pub(super) async fn load(
        &mut self,
        choice: TierChoice,
        source: Option<ModelSource>,
        file: Option<web_sys::File>,
        memory_only: bool,
    ) {
        if self.gpu.is_none() && self.gpu_error.is_none() {
            self.probe().await;
        }
        self.stop.set(false);
        self.memory_only = memory_only;
        let started = js::now_ms();
        self.engine = None;
        self.chat = None;
        self.inspection = None;
        self.steering = None;
        let source = source
            .or_else(|| self.source.clone())
            .unwrap_or(ModelSource::Default);
        let result = match self.choose(&source, file).await {
            Ok(()) => self.load_chosen(choice).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(info) => {
                self.summaries
                    .insert(info.sha256.clone(), info.summary.clone());
                post(EngineEvent::Loaded(Box::new(ModelInfo {
                    load_ms: js::now_ms() - started,
                    ..info
                })));
                self.list().await;
                self.prime_chat().await;
            }
            Err(e) => {
                if !e.retry {
                    // A model that cannot run here keeps nothing (a verified copy stays).
                    self.drop_partial().await;
                }
                post(EngineEvent::LoadFailed {
                    message: e.message,
                    retry: e.retry,
                    offer_memory: e.offer_memory,
                });
            }
        }
    }

    /// Resolves `source` to the bytes to load (reusing the last check's, when it was this one).
    async fn choose(
        &mut self,
        source: &ModelSource,
        file: Option<web_sys::File>,
    ) -> Result<(), LoadError> {
        // The model loaded now (a tier switch, a retry), or the one just checked: as they are
        // (a file opened from disk is read again; nothing else is).
        let known = [
            (self.source.as_ref(), self.target.as_ref()),
            (
                self.checked.as_ref().map(|c| &c.0),
                self.checked.as_ref().map(|c| &c.1),
            ),
        ]
        .into_iter()
        .find_map(|(s, t)| (s == Some(source) && file.is_none()).then_some(t).flatten())
        .cloned();
        let target = match known {
            Some(target) => target,
            None => {
                let store = Store::open().await;
                let manifest = store::fetch_manifest(&store).await?;
                self.resolve(&store, &manifest, source, file).await?.0
            }
        };
        self.target = Some(target);
        self.source = Some(source.clone());
        Ok(())
    }

    async fn load_chosen(&mut self, choice: TierChoice) -> Result<ModelInfo, LoadError> {
        match choice {
            TierChoice::Cpu => self.load_cpu("you chose the CPU").await,
            TierChoice::Auto | TierChoice::WebGpu => match self.take_gpu().await {
                Some(gpu) => match self.load_gpu(gpu).await {
                    // A network or storage failure is reported (Retry resumes); anything else
                    // may be WebGPU's alone: the CPU tries.
                    Err(e) if !cancelled(&e) && (e.device || !e.retry) => {
                        let reason = format!(
                            "WebGPU could not run this model ({}); it runs on the CPU",
                            e.message
                        );
                        let info = self.load_cpu(&reason).await?;
                        Ok(ModelInfo {
                            note: Some(reason),
                            ..info
                        })
                    }
                    result => result,
                },
                None => {
                    let reason = self
                        .gpu_error
                        .clone()
                        .unwrap_or_else(|| "WebGPU is not available".into());
                    self.load_cpu(&reason).await
                }
            },
        }
    }

    /// Deletes an unverified partial copy of the model being loaded (a copy whose state
    /// cannot be read stays).
    async fn drop_partial(&self) {
        let Some(target) = &self.target else { return };
        let Some(storage) = &target.storage else {
            return;
        };
        let Ok(_lock) = self.lock_store(false).await else {
            return;
        };
        let store = Store::open().await;
        if matches!(store.state(storage, target.bytes).await, Ok((None, _))) {
            store.clear(storage).await;
        }
    }

    /// Takes the store's Web Lock, waiting while another tab holds it; a load (`announce`)
    /// says so, and Stop ends its wait. `None` where the browser has no Web Locks.
    pub(super) async fn lock_store(&self, announce: bool) -> Result<Option<LockGuard>, LoadError> {
        match js::try_lock(STORE_LOCK).await {
            Err(why) => {
                store::warn(&format!("tabs are not coordinated: {why}"));
                return Ok(None);
            }
            Ok(Some(guard)) => return Ok(Some(guard)),
            Ok(None) => {}
        }
        if announce {
            post(EngineEvent::Waiting(
                "Another Glassbox tab is loading the model; this tab goes on as soon as it is \
                 done."
                    .into(),
            ));
        }
        loop {
            js::sleep(250).await;
            if announce && self.stop.get() {
                return Err(LoadError::new(
                    "cancelled while another Glassbox tab was loading the model; Retry goes on",
                    true,
                ));
            }
            if let Ok(Some(guard)) = js::try_lock(STORE_LOCK).await {
                return Ok(Some(guard));
            }
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
        self.load_on(Device::WebGpu(gpu), Tier::WebGpu).await
    }

    pub(super) async fn load_cpu(&mut self, reason: &str) -> Result<ModelInfo, LoadError> {
        post(EngineEvent::Tier(ComputeTier::Cpu {
            reason: reason.to_string(),
            threads: super::cpu_threads(),
        }));
        self.load_on(Device::Cpu, Tier::Cpu).await
    }

    /// Loads the chosen model on `device` (cache first), then warms it up.
    async fn load_on(&mut self, device: Device, tier: Tier) -> Result<ModelInfo, LoadError> {
        let mut target = self
            .target
            .clone()
            .ok_or_else(|| LoadError::new("no model was chosen", false))?;
        let mut notes = Vec::new();
        if self.memory_only {
            target.storage = None;
            notes.push(
                "The model runs from memory: it is not kept in this browser, and is downloaded \
                 again on the next visit."
                    .to_string(),
            );
        }
        let lock = self.lock_store(true).await?;
        let store = Store::open().await;
        let limits = probe::device_limits(self.gpu_limits).await;
        let context = Cell::new(PAGE_CONTEXT);
        let note = Cell::new(None::<String>);
        let on_header = |header: &GgufHeader| -> Result<(), LoadError> {
            let (fits, full) = probe::context_on(header, &limits, tier);
            match fits {
                Ok(ctx) => {
                    if ctx < full {
                        note.set(Some(format!(
                            "The context is {ctx} tokens: a longer one does not fit this device."
                        )));
                    }
                    context.set(ctx);
                    Ok(())
                }
                Err(why) if tier == Tier::WebGpu => {
                    Err(LoadError::device(format!("it does not fit: {why}")))
                }
                Err(why) => Err(LoadError::new(
                    format!("it does not fit in this browser: {why}"),
                    false,
                )),
            }
        };
        let progress = |p: LoadProgress| post(EngineEvent::Progress(p));
        let hooks = Hooks {
            progress: &progress,
            stop: &self.stop,
            on_header: &on_header,
        };
        let LoadedBytes {
            engine,
            sha256,
            note: stored_note,
        } = feed::load_model(device, &store, &target, &hooks).await?;
        notes.extend(stored_note);
        // The stored copy is no longer needed: another tab may read it now.
        drop(lock);
        post(EngineEvent::Progress(LoadProgress {
            stage: LoadStage::WarmUp,
            bytes: target.bytes,
            total: target.bytes,
            bytes_per_second: 0.0,
            tensors_loaded: 0,
            tensors_total: 0,
        }));
        js::yield_now().await;
        // One token through every kernel: compiles the GPU pipelines now rather than at the
        // first question.
        let bos = [engine.tokenizer().bos_id.unwrap_or(0)];
        engine
            .session(8)?
            .feed(Feed::append(&bos).top_k(Selection::greedy()))
            .await?;
        let summary = ModelSummary::from_header(engine.header());
        let info = self
            .describe(&store, &engine, &target, sha256, &summary)
            .await;
        self.context = context.get();
        self.engine = Some(engine);
        notes.extend(note.take());
        Ok(ModelInfo {
            context: self.context,
            note: (!notes.is_empty()).then(|| notes.join(" ")),
            ..info
        })
    }

    /// The loaded model as the page shows it; a model the user added is listed as stored.
    async fn describe(
        &mut self,
        store: &Store,
        engine: &Engine,
        target: &Target,
        sha256: String,
        summary: &ModelSummary,
    ) -> ModelInfo {
        let checked = target.sha256.is_some();
        let bundled = store::fetch_manifest(store)
            .await
            .ok()
            .and_then(|m| m.find(&sha256).cloned());
        let name = match (&bundled, engine.header().get_str("general.name")) {
            (Some(file), _) => file.name.clone(),
            (None, Ok(name)) => name.to_string(),
            (None, Err(_)) => target.name.clone(),
        };
        let url = target.url().filter(|u| !u.is_empty()).map(str::to_string);
        if bundled.is_none() {
            if let Some(storage) = &target.storage {
                if store.has_verified(storage, target.bytes).await {
                    store
                        .remember(store::StoredModel {
                            sha256: sha256.clone(),
                            storage: storage.clone(),
                            bytes: target.bytes,
                            name: name.clone(),
                            url: url.clone(),
                            summary: Some(summary.clone()),
                        })
                        .await;
                }
            }
        }
        // From now on the model is named by its sha256 (a URL model keeps its URL).
        let source = ModelSource::Sha {
            sha256: sha256.clone(),
            url: match target.origin {
                Origin::Url(_) if bundled.is_none() => url,
                _ => None,
            },
        };
        self.source = Some(source.clone());
        self.target = Some(Target {
            sha256: Some(sha256.clone()),
            ..target.clone()
        });
        ModelInfo {
            name,
            context: PAGE_CONTEXT,
            bytes: target.bytes,
            sha256,
            default_system_prompt: default_system_prompt(engine),
            load_ms: 0.0,
            source,
            summary: summary.clone(),
            licence_url: bundled
                .and_then(|m| m.licence_url())
                .or_else(|| target.licence_url.clone()),
            completion: engine.template().is_none() && engine.template_error().is_none(),
            template_error: engine.template_error().map(str::to_string),
            sha256_checked: checked,
            note: None,
        }
    }
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
