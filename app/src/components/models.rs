//! The model list and the ways to another model: the manifest's models and those stored here
//! (name, architecture, quantization types, parameters, size, context, licence), a GGUF opened
//! from disk (button, file input, or dropped on the page) or fetched from a URL, and the check
//! that says what will work before any weight is fetched. Also the origins the user allows.

use crate::protocol::{ModelCheck, ModelEntry};
use crate::state::{use_app_state, EngineState, ModelsState};
use engine::runtime::budget::ModelSummary;
use leptos::html::{Input, Section};
use leptos::prelude::*;

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn millions(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} B", n as f64 / 1e9)
    } else {
        format!("{:.0} M", n as f64 / 1e6)
    }
}

/// "Q4_K ×144, Q6_K ×18, F32 ×73".
pub fn types_text(summary: &ModelSummary) -> String {
    summary
        .types
        .iter()
        .map(|(t, n)| format!("{t} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shape in words: "18 layers × 4 heads; 15 local (512-token window), 3 global".
pub fn shape_text(summary: &ModelSummary) -> Option<String> {
    let c = summary.config.as_ref()?;
    let mut text = format!("{} layers × {} heads", c.n_layers, c.n_heads);
    if let Some(window) = c.sliding_window {
        let local = c.local_layers.iter().filter(|&&l| l).count();
        text.push_str(&format!(
            "; {local} local ({window}-token window), {} global",
            c.n_layers - local
        ));
    }
    Some(text)
}

/// One line of facts: architecture, types, parameters, size, context, licence.
fn facts(summary: &ModelSummary, bytes: u64) -> String {
    let mut parts = vec![
        summary.architecture.clone(),
        types_text(summary),
        format!("{} parameters", millions(summary.parameters)),
        megabytes(bytes),
    ];
    if let Some(c) = &summary.config {
        parts.push(format!("{}-token context", c.context_len));
    }
    parts.push(format!(
        "licence: {}",
        summary
            .license
            .as_deref()
            .unwrap_or("not stated in the file")
    ));
    parts.join(" · ")
}

/// The loaded model's local (sliding-window) layers and their window, where it has any.
pub(super) fn local_layers(engine: EngineState) -> Option<(Vec<bool>, usize)> {
    engine.model.with(|m| {
        let config = m.as_ref()?.summary.config.as_ref()?;
        Some((config.local_layers.clone(), config.sliding_window?))
    })
}

/// "Layers 0–4, 6–10" from a mask of layers.
fn ranges(layers: &[bool], which: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        if layers[i] != which {
            i += 1;
            continue;
        }
        let start = i;
        while i < layers.len() && layers[i] == which {
            i += 1;
        }
        out.push(if i - 1 == start {
            start.to_string()
        } else {
            format!("{start}–{}", i - 1)
        });
    }
    out.join(", ")
}

/// The model the explorer looks into, in a sentence: its shape, and which layers are local.
pub(super) fn model_sentence(engine: EngineState) -> Option<String> {
    engine.model.with(|m| {
        let m = m.as_ref()?;
        let c = m.summary.config.as_ref()?;
        let mut text = format!("{}: {} layers × {} heads.", m.name, c.n_layers, c.n_heads);
        if let Some(window) = c.sliding_window {
            text.push_str(&format!(
                " Local layers (each token sees only the {window} tokens before it; marked \
                 orange in the model view): {}. Global layers (every token before it): {}.",
                ranges(&c.local_layers, true),
                ranges(&c.local_layers, false)
            ));
        }
        Some(text)
    })
}

#[component]
pub fn ModelsPanel() -> impl IntoView {
    let state = use_app_state();
    let models = state.models;
    view! {
        <section class="models" aria-label="Models">
            <h2>"Models"</h2>
            <ul class="model-list" aria-label="Model list">
                <For
                    each=move || models.entries.get()
                    key=|e| format!("{e:?}")
                    children=move |entry| view! { <EntryView entry=entry /> }
                />
            </ul>
            <OpenFile models=models />
            <OpenUrl models=models />
            <Origins models=models />
            <CheckView models=models />
        </section>
    }
}

#[component]
fn EntryView(entry: ModelEntry) -> impl IntoView {
    let state = use_app_state();
    let models = state.models;
    let sha = entry.sha256.clone();
    let loaded = move || {
        state
            .engine
            .model
            .with(|m| m.as_ref().is_some_and(|m| m.sha256 == sha))
    };
    let mut tags = Vec::new();
    if entry.default {
        tags.push("default");
    }
    if entry.stored {
        tags.push("stored here");
    }
    if !entry.bundled {
        tags.push("added by you");
    }
    let tags = tags.join(", ");
    let facts_text = match &entry.summary {
        Some(summary) => facts(summary, entry.bytes),
        None => format!("{} · check it to read its header", megabytes(entry.bytes)),
    };
    let shape = entry.summary.as_ref().and_then(shape_text);
    let licence = entry.licence_url.clone().map(|href| {
        view! { " " <a href=href target="_blank" rel="noopener">"Licence text"</a> }
    });
    let name = entry.name.clone();
    let (check_entry, forget_entry) = (entry.clone(), entry.clone());
    view! {
        <li class="model-entry" data-sha256=entry.sha256.clone()>
            <span class="model-title">{entry.name.clone()}</span>
            <span class="tags">
                {(!tags.is_empty()).then(|| format!(" ({tags})"))}
                {move || loaded().then_some(" — loaded")}
            </span>
            <p class="facts">{facts_text} {licence}</p>
            {shape.map(|s| view! { <p class="facts">{s}</p> })}
            <div class="actions">
                <button
                    aria-label=format!("Check {name}")
                    disabled=move || models.checking.get().is_some()
                    on:click=move |_| models.check_entry(&check_entry)
                >"Check"</button>
                {(!entry.bundled).then(|| {
                    let sha = forget_entry.sha256.clone();
                    view! {
                        <button
                            aria-label=format!("Delete {} from this browser", forget_entry.name)
                            on:click=move |_| models.forget(&sha)
                        >"Delete"</button>
                    }
                })}
            </div>
        </li>
    }
}

/// "Open a GGUF file": a button, and the file input (hidden, of the same name) it opens.
#[component]
fn OpenFile(models: ModelsState) -> impl IntoView {
    let input = NodeRef::<Input>::new();
    let on_change = move |_| {
        let Some(input) = input.get_untracked() else {
            return;
        };
        if let Some(file) = input.files().and_then(|files| files.get(0)) {
            models.open_file(file);
        }
        // Choosing the same file again must fire again.
        input.set_value("");
    };
    view! {
        <div class="open-file" class:dragging=move || models.dragging.get()>
            <button type="button" on:click=move |_| {
                if let Some(input) = input.get_untracked() {
                    input.click();
                }
            }>"Open a GGUF file"</button>
            <input
                node_ref=input
                type="file"
                accept=".gguf"
                aria-label="Open a GGUF file"
                hidden
                on:change=on_change
            />
            <label class="field inline keep">
                <input type="checkbox" prop:checked=move || models.keep.get()
                    on:change=move |ev| models.keep.set(event_target_checked(&ev)) />
                <span>"Keep a copy in this browser"</span>
            </label>
            <p class="hint">
                {move || if models.dragging.get() {
                    "Drop the GGUF file to open it."
                } else {
                    "Or drop a .gguf file on the page. It is read here and never leaves this machine."
                }}
            </p>
        </div>
    }
}

#[component]
fn OpenUrl(models: ModelsState) -> impl IntoView {
    let url = RwSignal::new(String::new());
    let sha = RwSignal::new(String::new());
    view! {
        <form class="open-url" on:submit=move |ev| {
            ev.prevent_default();
            models.check_url(&url.get_untracked(), &sha.get_untracked());
        }>
            <label class="field">
                <span>"Model URL"</span>
                <input type="url" placeholder="https://…/model.gguf" prop:value=move || url.get()
                    on:input=move |ev| url.set(event_target_value(&ev)) />
            </label>
            <label class="field">
                <span>"Expected sha256 (optional)"</span>
                <input type="text" spellcheck="false" prop:value=move || sha.get()
                    on:input=move |ev| sha.set(event_target_value(&ev)) />
            </label>
            <button type="submit" disabled=move || url.get().trim().is_empty() || models.checking.get().is_some()>
                "Check URL"
            </button>
        </form>
    }
}

/// The origins models may be fetched from, besides the page's own.
#[component]
fn Origins(models: ModelsState) -> impl IntoView {
    let state = use_app_state();
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let apply = move |result: Result<(), String>| match result {
        Ok(()) => {
            error.set(None);
            text.set(String::new());
            // The engine worker's policy is written when its scripts are fetched: a new one.
            state.restart_engine();
        }
        Err(e) => error.set(Some(e)),
    };
    let controlled = move || {
        // Asked again whenever the origins change.
        models.origins.track();
        web_sys::window()
            .and_then(|w| w.navigator().service_worker().controller())
            .is_some()
    };
    view! {
        <details class="origins">
            <summary>"Allowed origins"</summary>
            <p class="hint">
                "Models come from this page's origin, and from the origins you allow here (the \
                 engine's Content-Security-Policy lists them; its server must allow this page \
                 with CORS)."
            </p>
            <ul aria-label="Allowed origins">
                <For each=move || models.origins.get() key=|o| o.clone() let:origin>
                    <li>
                        <code>{origin.clone()}</code>
                        " "
                        <button class="link" aria-label=format!("Forbid {origin}") on:click={
                            let origin = origin.clone();
                            move |_| {
                                let origin = origin.clone();
                                wasm_bindgen_futures::spawn_local(async move {
                                    apply(models.remove_origin(&origin).await)
                                })
                            }
                        }>"Forbid"</button>
                    </li>
                </For>
            </ul>
            <form on:submit=move |ev| {
                ev.prevent_default();
                let value = text.get_untracked();
                wasm_bindgen_futures::spawn_local(async move { apply(models.allow_origin(&value).await) });
            }>
                <label class="field">
                    <span>"Origin to allow"</span>
                    <input type="url" placeholder="https://huggingface.co" prop:value=move || text.get()
                        on:input=move |ev| text.set(event_target_value(&ev)) />
                </label>
                <button type="submit" disabled=move || text.get().trim().is_empty()>"Allow origin"</button>
            </form>
            {move || error.get().map(|e| view! { <p class="problem">{e}</p> })}
            {move || (!controlled()).then(|| view! {
                <p class="hint">"The service worker is not running yet: reload the page for allowed origins to apply."</p>
            })}
        </details>
    }
}

/// The check's answer: the header's summary, the memory plan, and what will happen.
#[component]
fn CheckView(models: ModelsState) -> impl IntoView {
    view! {
        <Show when=move || models.checking.get().is_some()>
            <div class="model-check" aria-live="polite">
                <p>"Reading the model's header…"</p>
                <button on:click=move |_| models.cancel_check()>"Cancel check"</button>
            </div>
        </Show>
        {move || models.check.get().map(|result| match result {
            Ok(check) => view! { <CheckResult check=*check /> }.into_any(),
            Err(message) => view! {
                <section class="model-check failed" aria-label="Model check">
                    <p class="problem" role="alert">"This model cannot be used: " {message}</p>
                    <button on:click=move |_| models.check.set(None)>"Close"</button>
                </section>
            }.into_any(),
        })}
    }
}

#[component]
fn CheckResult(check: ModelCheck) -> impl IntoView {
    let state = use_app_state();
    let models = state.models;
    let s = &check.summary;
    let mut rows: Vec<(&'static str, String)> = vec![
        ("Architecture", s.architecture.clone()),
        ("Quantization", types_text(s)),
        ("Parameters", millions(s.parameters)),
        ("File size", megabytes(check.bytes)),
    ];
    if let Some(c) = &s.config {
        rows.push((
            "Context",
            format!(
                "{} tokens (this page gives it {})",
                c.context_len, check.context
            ),
        ));
    }
    if let Some(shape) = shape_text(s) {
        rows.push(("Shape", shape));
    }
    rows.push((
        "Licence",
        s.license
            .clone()
            .unwrap_or_else(|| "not stated in the file".into()),
    ));
    rows.push((
        "Chat template",
        if s.has_chat_template {
            "yes: the chat view answers".into()
        } else {
            "none: completion mode (the chat view continues your text)".into()
        },
    ));
    if let Some(sha) = &check.sha256 {
        rows.push(("sha256", sha.clone()));
    }
    let runnable = check.tier.is_some();
    let tiers = check.plan.as_ref().map(|p| {
        p.tiers
            .iter()
            .map(|t| view! { <li>{format!("{}: {}", t.tier.label(), t.verdict)}</li> })
            .collect_view()
    });
    let licence = check.licence_url.clone().map(|href| {
        view! { <p><a href=href target="_blank" rel="noopener">"Read the licence"</a></p> }
    });
    let busy = move || state.engine.status.get() == crate::state::EngineStatus::Loading;
    // The answer takes the focus (and scrolls into view): keyboard and screen reader users
    // land on it.
    let node = NodeRef::<Section>::new();
    Effect::new(move |_| {
        if let Some(section) = node.get() {
            let _ = section.focus();
        }
    });
    view! {
        <section node_ref=node tabindex="-1" class="model-check" class:refused=!runnable aria-label="Model check">
            <h3>{check.name.clone()}</h3>
            <dl>
                {rows.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
            </dl>
            {licence}
            <p class="verdict">{check.verdict.clone()}</p>
            <ul class="tiers" aria-label="Memory per tier">{tiers}</ul>
            <div class="actions">
                <button disabled=move || !runnable || busy() on:click=move |_| models.load_checked()>
                    "Load this model"
                </button>
                <button on:click=move |_| models.check.set(None)>"Close"</button>
            </div>
        </section>
    }
}
