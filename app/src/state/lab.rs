//! The Lab's state: the ablation (its prompt, the heads ablated, the head whose attention is
//! shown, and the worker's answer), the direct logit attribution of the same prompt (run with
//! it when the prompt or the target changed), the outlier measure (run by its own button: it
//! takes seconds) and the patching sweep (its prompts, progress and result). Clicking a head
//! sends a new ablation at once; the answer to an older one is dropped.

use super::engine::EngineState;
use crate::deep_link::{Figure, Link, View};
use crate::protocol::{
    AblationResult, AttributionResult, LabReply, LabRequest, OutlierResult, PatchingResult,
    ToWorker,
};
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
    /// The token whose logit the attribution splits (`None`: the most likely next token).
    pub dla_target: RwSignal<Option<u32>>,
    pub attribution: RwSignal<Option<AttributionResult>>,
    pub attributing: RwSignal<Option<u32>>,
    pub attribution_error: RwSignal<Option<String>>,
    /// The prompt and target of the attribution last asked for: a new ablation of the same
    /// prompt does not change it, so it is not run again.
    attributed_for: StoredValue<Option<(String, Option<u32>)>>,
    pub outliers: RwSignal<Option<OutlierResult>>,
    pub measuring: RwSignal<Option<u32>>,
    pub outliers_error: RwSignal<Option<String>>,
    /// The precision run shown: 0 f32, 1 8-bit per block, 2 8-bit with outliers wide.
    pub precision: RwSignal<usize>,
    /// A deep link's outlier measure (embed mode), run once the chat model is ready.
    pub(super) pending_outliers: StoredValue<bool>,
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
            dla_target: RwSignal::new(None),
            attribution: RwSignal::new(None),
            attributing: RwSignal::new(None),
            attribution_error: RwSignal::new(None),
            attributed_for: StoredValue::new(None),
            outliers: RwSignal::new(None),
            measuring: RwSignal::new(None),
            outliers_error: RwSignal::new(None),
            precision: RwSignal::new(0),
            pending_outliers: StoredValue::new(false),
            engine,
        }
    }

    /// Whether the Lab keeps the chat model busy (other views wait).
    pub fn busy(self) -> bool {
        self.ablating.get().is_some()
            || self.sweeping.get().is_some()
            || self.attributing.get().is_some()
            || self.measuring.get().is_some()
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
        self.run_attribution(false);
    }

    /// Splits the chosen token's logit after the prompt; unless `again`, only when the prompt
    /// or the target changed since the last one asked for.
    pub(super) fn run_attribution(self, again: bool) {
        let prompt = self.prompt.get_untracked();
        // A target chosen for another prompt is one of its tokens, not this one's: back to the
        // most likely. (A deep link's target, with no attribution before it, stays.)
        let other_prompt = self
            .attributed_for
            .with_value(|a| a.as_ref().is_some_and(|(p, _)| *p != prompt));
        if other_prompt {
            self.dla_target.set(None);
        }
        let wanted = (prompt, self.dla_target.get_untracked());
        if !again
            && self
                .attributed_for
                .with_value(|a| a.as_ref() == Some(&wanted))
        {
            return;
        }
        let request = self.engine.next_request();
        self.attributing.set(Some(request));
        self.attribution_error.set(None);
        self.engine.send(LabRequest::Attribute {
            request,
            prompt: wanted.0.clone(),
            target: wanted.1,
        });
        self.attributed_for.set_value(Some(wanted));
    }

    /// Measures the outlier features of the prompt (seconds on the CPU).
    pub(super) fn measure_outliers(self) {
        let request = self.engine.next_request();
        self.measuring.set(Some(request));
        self.outliers_error.set(None);
        self.engine.send(LabRequest::MeasureOutliers {
            request,
            prompt: self.prompt.get_untracked(),
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
            LabReply::Attributed { request, result } => {
                if self.attributing.get_untracked() == Some(request) {
                    self.attributing.set(None);
                    match result {
                        Ok(result) => self.attribution.set(Some(result)),
                        Err(message) => {
                            self.attribution.set(None);
                            self.attribution_error.set(Some(message));
                        }
                    }
                }
            }
            LabReply::OutliersMeasured { request, result } => {
                if self.measuring.get_untracked() == Some(request) {
                    self.measuring.set(None);
                    match result {
                        Ok(result) => self.outliers.set(Some(result)),
                        Err(message) => self.outliers_error.set(Some(message)),
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
        self.attribution.set(None);
        self.attributed_for.set_value(None);
        self.outliers.set(None);
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
        self.dla_target.set(link.dla_target);
        self.precision.set(link.precision.unwrap_or(0));
        // An embedded sweep or outlier measure runs by itself; a link to the whole page waits
        // for Run or Measure (the attribution runs with the prompt).
        self.pending_sweep
            .set_value(link.embed == Some(Figure::Patching));
        self.pending_outliers
            .set_value(link.embed == Some(Figure::Outliers));
    }

    pub(super) fn write_link(self, link: &mut Link) {
        if link.view == View::Lab {
            link.prompt = Some(self.prompt.get());
            link.ablate = self.ablated.get();
            link.layer = Some(self.layer.get());
            link.head = Some(self.head.get());
            link.patching = Some((self.clean.get(), self.corrupt.get()));
            link.dla_target = self.dla_target.get();
            link.precision = Some(self.precision.get()).filter(|&p| p != 0);
        }
    }
}
