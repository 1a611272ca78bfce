//! The first visit's welcome: what Glassbox is, what it will download and where it keeps it.
//! With the data saver on, the download waits for its Start button.

use crate::state::{first_visit, use_app_state};
use leptos::prelude::*;

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

#[component]
pub fn Welcome() -> impl IntoView {
    let state = use_app_state();
    let (engine, models) = (state.engine, state.models);
    let shown =
        RwSignal::new(!first_visit::welcomed() || engine.deferred.get_untracked().is_some());
    let waiting = move || engine.deferred.with(Option::is_some);
    // The default model's size and name, once the list has come.
    let download = move || {
        models.entries.with(|entries| {
            entries
                .iter()
                .find(|e| e.default)
                .map(|e| format!("{}, {}", e.name, megabytes(e.bytes)))
        })
    };
    let close = move || {
        first_visit::mark_welcomed();
        shown.set(false);
    };
    view! {
        <Show when=move || shown.get()>
            <section class="welcome" aria-labelledby="welcome-title">
                <h2 id="welcome-title">"Welcome to Glassbox"</h2>
                <p>
                    "Glassbox runs small language and vision models inside this page and shows "
                    "what happens in them: attention per layer and head, the logit lens, ablations "
                    "and more. Nothing you type leaves your machine."
                </p>
                <p>
                    "It downloads the chat model, "
                    {move || download().unwrap_or_else(|| "about 100 MB".into())}
                    ", once, and keeps it in this browser's storage for this site, so the page "
                    "works offline afterwards (the side panel's Model cache can delete it)."
                </p>
                {move || if waiting() {
                    view! {
                        <p class="hint">"Your browser asks to save data: nothing is downloaded until you press Start."</p>
                        <div class="actions">
                            <button class="primary" on:click=move |_| {
                                close();
                                engine.start_deferred();
                            }>"Start"</button>
                        </div>
                    }.into_any()
                } else {
                    view! {
                        <div class="actions">
                            <button on:click=move |_| close()>"Got it"</button>
                        </div>
                    }.into_any()
                }}
            </section>
        </Show>
    }
}
