//! The colour scheme: the system's (the default), light or dark, kept in localStorage. The
//! stylesheet's colours are `light-dark()` pairs, so the whole page follows `color-scheme`.

use leptos::prelude::*;
use wasm_bindgen::{closure::Closure, JsCast};

/// Counts the colour scheme's changes (the Theme choice, or the system's while it is followed):
/// figures drawn on a canvas read it so they are drawn again in the new colours.
#[derive(Clone, Copy)]
pub struct SchemeEpoch(pub RwSignal<u32>);

/// Provides the [`SchemeEpoch`] and follows the system's scheme.
pub fn provide_scheme_epoch() -> SchemeEpoch {
    let epoch = SchemeEpoch(RwSignal::new(0));
    provide_context(epoch);
    let query = web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten());
    if let Some(query) = query {
        let changed = Closure::<dyn Fn()>::new(move || epoch.0.update(|e| *e += 1));
        let _ = query.add_event_listener_with_callback("change", changed.as_ref().unchecked_ref());
        // The page lives as long as the listener: let it keep the closure.
        changed.forget();
    }
    epoch
}

const STORAGE_KEY: &str = "glassbox.theme";

/// The root element's `data-theme`, which the stylesheet maps to `color-scheme`.
fn apply(theme: &str) {
    let root = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element());
    if let Some(root) = root {
        let _ = match theme {
            "light" | "dark" => root.set_attribute("data-theme", theme),
            _ => root.remove_attribute("data-theme"),
        };
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// "Theme": System / Light / Dark.
#[component]
pub fn ThemeSwitch() -> impl IntoView {
    let saved = storage()
        .and_then(|s| s.get_item(STORAGE_KEY).ok().flatten())
        .unwrap_or_default();
    let theme = RwSignal::new(saved);
    Effect::new(move |_| {
        let chosen = theme.get();
        apply(&chosen);
        if let Some(s) = storage() {
            let _ = s.set_item(STORAGE_KEY, &chosen);
        }
        if let Some(epoch) = use_context::<SchemeEpoch>() {
            epoch.0.update(|e| *e += 1);
        }
    });
    view! {
        <label class="theme field inline">
            <span>"Theme"</span>
            <select
                prop:value=move || theme.get()
                on:change=move |ev| theme.set(event_target_value(&ev))
            >
                <option value="">"System"</option>
                <option value="light">"Light"</option>
                <option value="dark">"Dark"</option>
            </select>
        </label>
    }
}
