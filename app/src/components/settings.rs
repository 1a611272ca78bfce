use crate::protocol::{ComputeTier, TierChoice, CUSTOM_PAIR};
use crate::state::{use_app_state, EngineStatus, Settings};
use leptos::prelude::*;

/// The side panel: system prompt, sampling controls, compute tier, the models, and the model's
/// cache.
#[component]
pub fn SidePanel() -> impl IntoView {
    view! {
        <aside class="side" aria-label="Settings">
            <SystemPrompt />
            <SamplingControls />
            <SteeringControl />
            <super::attention_policy::PolicyControl />
            <TierSwitch />
            <super::models::ModelsPanel />
            <CachePanel />
        </aside>
    }
}

#[component]
fn SystemPrompt() -> impl IntoView {
    let state = use_app_state();
    let placeholder = move || match state.engine.model.get() {
        Some(m) if m.completion => "Not used in completion mode".to_string(),
        m => m
            .and_then(|m| m.default_system_prompt)
            .unwrap_or_else(|| "The model's default".into()),
    };
    view! {
        <label class="field">
            <span>"System prompt"</span>
            <textarea
                rows="3"
                placeholder=placeholder
                prop:value=move || state.chat.settings.with(|s| s.system_prompt.clone())
                on:change=move |ev| state.chat.settings.update(|s| s.system_prompt = event_target_value(&ev))
            ></textarea>
        </label>
    }
}

/// A number input bound to one field of the settings.
#[component]
fn NumberField(
    label: &'static str,
    step: &'static str,
    min: &'static str,
    max: &'static str,
    get: fn(&Settings) -> String,
    set: fn(&mut Settings, f64),
) -> impl IntoView {
    let state = use_app_state();
    view! {
        <label class="field inline">
            <span>{label}</span>
            <input
                type="number"
                step=step
                min=min
                max=max
                prop:value=move || state.chat.settings.with(get)
                on:change=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                        if v.is_finite() {
                            state.chat.settings.update(|s| set(s, v));
                        }
                    }
                }
            />
        </label>
    }
}

#[component]
fn SamplingControls() -> impl IntoView {
    let state = use_app_state();
    view! {
        <fieldset>
            <legend>"Sampling"</legend>
            <NumberField label="Temperature" step="0.05" min="0" max="2"
                get=|s| s.params.temperature.to_string() set=|s, v| s.params.temperature = v.clamp(0.0, 2.0) as f32 />
            <NumberField label="Top-k" step="1" min="0" max="1000"
                get=|s| s.params.top_k.to_string() set=|s, v| s.params.top_k = v.clamp(0.0, 1000.0) as usize />
            <NumberField label="Top-p" step="0.05" min="0" max="1"
                get=|s| s.params.top_p.to_string() set=|s, v| s.params.top_p = v.clamp(0.0, 1.0) as f32 />
            <NumberField label="Repetition penalty" step="0.05" min="1" max="2"
                get=|s| s.params.repeat_penalty.to_string() set=|s, v| s.params.repeat_penalty = v.clamp(1.0, 2.0) as f32 />
            <NumberField label="Max new tokens" step="16" min="1" max="2048"
                get=|s| s.max_tokens.to_string() set=|s, v| s.max_tokens = v.clamp(1.0, 2048.0) as usize />
            <NumberField label="Seed" step="1" min="0" max="4294967295"
                get=|s| s.params.seed.to_string() set=|s, v| s.params.seed = v.max(0.0) as u64 />
            <button type="button" class="link" on:click=move |_| state.chat.settings.update(|s| {
                let system_prompt = std::mem::take(&mut s.system_prompt);
                *s = Settings { system_prompt, ..Settings::default() };
            })>"Reset sampling"</button>
        </fieldset>
    }
}

/// Steering the chat's replies (the Lab's third tool): a ready pair, its scale α (0: off) and
/// the block after which it is added. The worker computes each pair's vector once per layer.
#[component]
fn SteeringControl() -> impl IntoView {
    let state = use_app_state();
    let steering = move || state.chat.settings.with(|s| s.steering.clone());
    let n_layers = move || {
        state.engine.model.with(|m| {
            m.as_ref()
                .and_then(|m| m.summary.config.as_ref())
                .map_or(0, |c| c.n_layers)
        })
    };
    let layer = move || steering().layer.unwrap_or(n_layers() / 5);
    let describe = move || {
        let s = steering();
        if s.pair.is_empty() || s.alpha == 0.0 {
            return "Off: replies as the model gives them.".to_string();
        }
        let (positive, negative) = if s.pair == CUSTOM_PAIR {
            ("your first prompts", "your second prompts")
        } else {
            s.pair.split_once('-').unwrap_or((&s.pair, ""))
        };
        let towards = if s.alpha > 0.0 { positive } else { negative };
        format!(
            "On: replies pushed towards {towards} (α = {}) after block {}.",
            s.alpha,
            layer()
        )
    };
    view! {
        <fieldset class="steering">
            <legend>"Steering"</legend>
            <label class="field inline">
                <span>"Steering pair"</span>
                <select
                    prop:value=move || steering().pair
                    on:change=move |ev| state.chat.settings.update(|s| s.steering.pair = event_target_value(&ev))
                >
                    <option value="">"None"</option>
                    {engine::analysis::probes::STEERING_PAIRS.iter().map(|p| view! {
                        <option value=p.name>{p.name}</option>
                    }).collect_view()}
                    <option value=CUSTOM_PAIR>"your own pair"</option>
                </select>
            </label>
            <Show when=move || steering().pair == CUSTOM_PAIR>
                <label class="field">
                    <span>"Steer towards (one prompt per line)"</span>
                    <textarea
                        rows="3"
                        prop:value=move || steering().positive
                        on:change=move |ev| state.chat.settings.update(|s| s.steering.positive = event_target_value(&ev))
                    ></textarea>
                </label>
                <label class="field">
                    <span>"Steer away from (one prompt per line)"</span>
                    <textarea
                        rows="3"
                        prop:value=move || steering().negative
                        on:change=move |ev| state.chat.settings.update(|s| s.steering.negative = event_target_value(&ev))
                    ></textarea>
                </label>
            </Show>
            <label class="field inline">
                <span>"Steering strength α"</span>
                <input
                    type="range"
                    min="-8"
                    max="8"
                    step="0.5"
                    prop:value=move || steering().alpha.to_string()
                    on:input=move |ev| {
                        if let Ok(v) = event_target_value(&ev).parse::<f32>() {
                            state.chat.settings.update(|s| s.steering.alpha = v.clamp(-8.0, 8.0));
                        }
                    }
                />
                // Not an <output>: that is a status region, and the page has one status line.
                <span class="slider-value" aria-hidden="true">{move || steering().alpha.to_string()}</span>
            </label>
            <label class="field inline">
                // Not "… layer": the explorer's "Layer" field must stay the only one so named.
                <span>"Steer after block"</span>
                <input
                    type="number"
                    min="0"
                    max=move || n_layers().saturating_sub(1).to_string()
                    prop:value=move || layer().to_string()
                    on:change=move |ev| {
                        if let Ok(v) = event_target_value(&ev).parse::<usize>() {
                            let max = n_layers().saturating_sub(1);
                            state.chat.settings.update(|s| s.steering.layer = Some(v.min(max)));
                        }
                    }
                />
            </label>
            <p class="hint">{describe}</p>
        </fieldset>
    }
}

#[component]
fn TierSwitch() -> impl IntoView {
    let state = use_app_state();
    let current = move || match state.engine.tier.get() {
        Some(ComputeTier::WebGpu { .. }) => "webgpu",
        _ => "cpu",
    };
    view! {
        <label class="field">
            <span>"Compute"</span>
            <select
                prop:value=current
                disabled=move || state.engine.status.get() == EngineStatus::Loading || state.chat.generating.get().is_some()
                on:change=move |ev| {
                    let choice = if event_target_value(&ev) == "webgpu" { TierChoice::WebGpu } else { TierChoice::Cpu };
                    state.engine.load(choice);
                }
            >
                <option value="webgpu" disabled=move || !state.engine.webgpu_available.get()>"WebGPU"</option>
                <option value="cpu">"CPU (wasm)"</option>
            </select>
        </label>
    }
}

fn megabytes(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

#[component]
fn CachePanel() -> impl IntoView {
    let state = use_app_state();
    let summary = move || {
        let Some(info) = state.engine.cache.get() else {
            return "Checking the cache…".to_string();
        };
        if let Some(why) = info.unavailable {
            return why;
        }
        let model = match (info.model_bytes, info.partial_bytes) {
            (Some(bytes), _) => format!(
                "Cached model: {} (verified), in the {}",
                megabytes(bytes as f64),
                info.storage
            ),
            (None, Some(bytes)) => format!(
                "Partial download: {} in the {} (resumes on the next load)",
                megabytes(bytes as f64),
                info.storage
            ),
            _ => "The model is not cached".to_string(),
        };
        match (info.usage, info.quota) {
            (Some(usage), Some(quota)) => format!(
                "{model}. This site uses {} of {}.",
                megabytes(usage),
                megabytes(quota)
            ),
            _ => model,
        }
    };
    let model_name = move || {
        state
            .engine
            .model
            .get()
            .map(|m| format!("{} · sha256 {}…", m.name, &m.sha256[..12]))
    };
    view! {
        <section class="cache" aria-label="Model cache">
            <p class="model-name">{model_name}</p>
            <p>{summary}</p>
            {move || state.engine.cache.get().and_then(|c| c.note).map(|note| view! {
                <p class="cache-note">{note}</p>
            })}
            <button
                type="button"
                on:click=move |_| state.engine.clear_cache()
                disabled=move || state.engine.cache.get().is_none_or(|c| c.model_bytes.is_none() && c.partial_bytes.is_none())
            >"Remove cached model"</button>
        </section>
    }
}
