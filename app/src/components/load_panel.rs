use crate::protocol::{LoadProgress, LoadStage, ModelSource, TierChoice};
use crate::state::{use_app_state, EngineStatus};
use leptos::prelude::*;

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// "Downloading the model: 45.1 of 98.4 MB (46%), 12.3 MB/s, 4 s left".
fn describe(p: &LoadProgress) -> String {
    let percent = percent(p);
    let mut text = format!(
        "{}: {} of {} ({percent}%)",
        p.stage.label(),
        megabytes(p.bytes),
        megabytes(p.total)
    );
    if p.bytes_per_second > 0.0 && p.bytes < p.total {
        let left = (p.total - p.bytes) as f64 / p.bytes_per_second;
        text.push_str(&format!(
            ", {}/s, {:.0} s left",
            megabytes(p.bytes_per_second as u64),
            left.ceil()
        ));
    }
    if p.tensors_total > 0 {
        text.push_str(&format!(
            ", {} of {} tensors loaded",
            p.tensors_loaded, p.tensors_total
        ));
    }
    text
}

fn percent(p: &LoadProgress) -> u64 {
    (p.bytes * 100).checked_div(p.total).unwrap_or(0).min(100)
}

/// The model's arrival: a progress bar while loading (with a Cancel button while bytes arrive),
/// the error and a Retry button if it fails (and a way back to the default model).
#[component]
pub fn LoadPanel() -> impl IntoView {
    let engine = use_app_state().engine;
    let loading = move || {
        matches!(
            engine.status.get(),
            EngineStatus::Loading | EngineStatus::Starting
        ) && engine.deferred.with(Option::is_none)
    };
    let failed = move || match engine.status.get() {
        EngineStatus::Failed {
            message,
            retry,
            offer_memory,
        } => Some((message, retry, offer_memory)),
        _ => None,
    };
    let note = move || {
        (engine.status.get() == EngineStatus::Ready)
            .then(|| engine.model.get().and_then(|m| m.note))
            .flatten()
    };
    view! {
        {move || note().map(|note| view! { <p class="load-note">{note}</p> })}
        <Show when=loading>
            <div class="load-panel">
                <progress
                    aria-label="Model loading"
                    max="100"
                    value=move || engine.progress.get().map(|p| percent(&p)).unwrap_or(0)
                    aria-valuetext=move || engine.progress.get().map(|p| describe(&p)).unwrap_or_else(|| "Starting".into())
                ></progress>
                <p class="load-text">
                    {move || engine.waiting.get()
                        .or_else(|| engine.progress.get().map(|p| describe(&p)))
                        .unwrap_or_else(|| "Starting the engine…".into())}
                </p>
                <Show when=move || engine.waiting.get().is_some() || engine.progress.get().is_some_and(|p| p.stage != LoadStage::WarmUp)>
                    <button type="button" on:click=move |_| engine.cancel_load()>"Cancel download"</button>
                </Show>
            </div>
        </Show>
        {move || failed().map(|(message, retry, offer_memory)| view! {
            <div class="load-panel failed" role="alert">
                <p>"The model could not be loaded: " {message}</p>
                <Show when=move || retry>
                    <button on:click=move |_| engine.load(TierChoice::Auto)>"Retry"</button>
                </Show>
                <Show when=move || offer_memory>
                    <button on:click=move |_| engine.load_into_memory()>"Run from memory (not kept)"</button>
                </Show>
                <Show when=move || engine.source.get() != ModelSource::Default>
                    <button on:click=move |_| engine.load_model(ModelSource::Default, None, TierChoice::Auto)>
                        "Load the default model"
                    </button>
                </Show>
            </div>
        })}
    }
}
