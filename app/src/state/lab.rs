//! The Lab's state: the ablation (its prompt, the heads ablated, the head whose attention is
//! shown, and the worker's answer) and the patching sweep (its prompts, progress and result).
//! Clicking a head sends a new ablation at once; the answer to an older one is dropped.

use super::engine::EngineState;
use crate::deep_link::{Link, View};
use crate::protocol::{AblationResult, LabReply, LabRequest, PatchingResult, ToWorker};
use leptos::prelude::*;

pub const DEFAULT_PROMPT: &str = "The capital of France is";
/// Nine tokens each for SmolLM2's tokenizer (patching needs as many on both sides).
pub const DEFAULT_CLEAN: &str = "The Eiffel Tower is in the city of";
pub const DEFAULT_CORRUPT: &str = "The Colosseum is in the city of";

#[derive(Clone, Copy)]
pub struct LabState {
    pub prompt: RwSignal<String>,
    /// The ablated (layer, head) pairs, sorted.
    pub ablated: RwSignal<Vec<(usize, usize)>>,
    /// The head whose attention (under the ablation) is shown.
    pub layer: RwSignal<usize>,
    pub head: RwSignal<usize>,
    pub ablation: RwSignal<Option<AblationResult>>,
    /// The ablation run awaited.
    pub ablating: RwSignal<Option<u32>>,
    pub ablation_error: RwSignal<Option<String>>,
    pub clean: RwSignal<String>,
    pub corrupt: RwSignal<String>,
    pub sweep: RwSignal<Option<PatchingResult>>,
    pub sweeping: RwSignal<Option<u32>>,
    /// Patched runs done of all, while a sweep runs.
    pub progress: RwSignal<Option<(usize, usize)>>,
    pub sweep_error: RwSignal<Option<String>>,
    /// A deep link's sweep, run once the chat model is ready.
    pub(super) pending_sweep: StoredValue<bool>,
    engine: EngineState,
}

impl LabState {
    pub(super) fn new(engine: EngineState) -> Self {
        LabState {
            prompt: RwSignal::new(DEFAULT_PROMPT.to_string()),
            ablated: RwSignal::new(Vec::new()),
            layer: RwSignal::new(0),
            head: RwSignal::new(0),
            ablation: RwSignal::new(None),
            ablating: RwSignal::new(None),
            ablation_error: RwSignal::new(None),
            clean: RwSignal::new(DEFAULT_CLEAN.to_string()),
            corrupt: RwSignal::new(DEFAULT_CORRUPT.to_string()),
            sweep: RwSignal::new(None),
            sweeping: RwSignal::new(None),
            progress: RwSignal::new(None),
            sweep_error: RwSignal::new(None),
            pending_sweep: StoredValue::new(false),
            engine,
        }
    }

    /// Whether the Lab keeps the chat model busy (other views wait).
    pub fn busy(self) -> bool {
        self.ablating.get().is_some() || self.sweeping.get().is_some()
    }

    /// Runs the prompt with and without the ablated heads. The caller checked that the engine
    /// is free of other views' work (a second ablation may queue behind the first).
    pub(super) fn run_ablation(self) {
        let request = self.engine.next_request();
        self.ablating.set(Some(request));
        self.ablation_error.set(None);
        self.engine.send(LabRequest::Ablate {
            request,
            prompt: self.prompt.get_untracked(),
            heads: self.ablated.get_untracked(),
            shown: (self.layer.get_untracked(), self.head.get_untracked()),
        });
    }

    /// Ablates (layer, head) if it was not, else gives it back.
    pub(super) fn toggle(self, layer: usize, head: usize) {
        self.ablated
            .update(|heads| match heads.binary_search(&(layer, head)) {
                Ok(i) => {
                    heads.remove(i);
                }
                Err(i) => heads.insert(i, (layer, head)),
            });
    }

    pub(super) fn run_sweep(self) {
        let request = self.engine.next_request();
        self.sweeping.set(Some(request));
        self.sweep.set(None);
        self.sweep_error.set(None);
        self.progress.set(None);
        self.engine.send(LabRequest::Patch {
            request,
            clean: self.clean.get_untracked(),
            corrupt: self.corrupt.get_untracked(),
        });
    }

    /// Stops the sweep between two patched runs.
    pub fn stop_sweep(self) {
        if self.sweeping.get_untracked().is_some() {
            self.engine.send(ToWorker::Stop);
        }
    }

    pub(super) fn on_reply(self, reply: LabReply) {
        match reply {
            LabReply::Ablated { request, result } => {
                if self.ablating.get_untracked() == Some(request) {
                    self.ablating.set(None);
                    match result {
                        Ok(result) => self.ablation.set(Some(result)),
                        Err(message) => self.ablation_error.set(Some(message)),
                    }
                }
            }
            LabReply::PatchProgress {
                request,
                done,
                total,
            } => {
                if self.sweeping.get_untracked() == Some(request) {
                    self.progress.set(Some((done, total)));
                }
            }
            LabReply::Patched { request, result } => {
                if self.sweeping.get_untracked() == Some(request) {
                    self.sweeping.set(None);
                    self.progress.set(None);
                    match result {
                        Ok(sweep) => self.sweep.set(Some(sweep)),
                        Err(message) => self.sweep_error.set(Some(message)),
                    }
                }
            }
        }
    }

    /// What the model changed makes stale.
    pub(super) fn forget_results(self) {
        self.ablation.set(None);
        self.sweep.set(None);
    }

    pub(super) fn apply_link(self, link: &Link) {
        if link.view != View::Lab {
            return;
        }
        if let Some(prompt) = &link.prompt {
            self.prompt.set(prompt.clone());
        }
        let mut heads = link.ablate.clone();
        heads.sort_unstable();
        heads.dedup();
        self.ablated.set(heads);
        self.layer.set(link.layer.unwrap_or(0));
        self.head.set(link.head.unwrap_or(0));
        if let Some((clean, corrupt)) = &link.patching {
            self.clean.set(clean.clone());
            self.corrupt.set(corrupt.clone());
        }
        // An embedded sweep runs by itself; a link to the whole page waits for Run.
        self.pending_sweep
            .set_value(link.embed == Some(crate::deep_link::Figure::Patching));
    }

    pub(super) fn write_link(self, link: &mut Link) {
        if link.view == View::Lab {
            link.prompt = Some(self.prompt.get());
            link.ablate = self.ablated.get();
            link.layer = Some(self.layer.get());
            link.head = Some(self.head.get());
            link.patching = Some((self.clean.get(), self.corrupt.get()));
        }
    }
}
