//! The colour scheme: the system's (the default), light or dark, kept in localStorage. The
//! stylesheet's colours are `light-dark()` pairs, so the whole page follows `color-scheme`.

use leptos::prelude::*;

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
