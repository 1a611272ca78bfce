//! "Copy link" and "Copy embed code": the deep link to what is shown, and an `<iframe>` snippet
//! that shows one figure of it alone (embed mode). Both also appear in a text box, for browsers
//! that refuse clipboard access.

use crate::deep_link::{Figure, Link};
use crate::state::use_app_state;
use leptos::prelude::*;

/// The page's address without its query.
pub fn base_url() -> String {
    web_sys::window()
        .and_then(|w| w.location().href().ok())
        .map(|h| h.split(['?', '#']).next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

pub fn full_url(link: &Link) -> String {
    format!("{}{}", base_url(), link.to_query())
}

/// An iframe's size that fits the figure.
fn frame_size(figure: Figure) -> (u32, u32) {
    match figure {
        Figure::Matrix | Figure::Rollout => (820, 980),
        Figure::Heads => (560, 900),
        Figure::Vit | Figure::Vir => (640, 1000),
        Figure::Order => (720, 900),
        Figure::Ablation => (720, 1000),
        Figure::Patching => (720, 900),
        Figure::Attribution => (720, 1000),
        Figure::Outliers => (1000, 900),
    }
}

pub fn embed_code(link: &Link, figure: Figure) -> String {
    let mut link = link.clone();
    link.embed = Some(figure);
    link.view = figure.view();
    let (w, h) = frame_size(figure);
    format!(
        "<iframe src=\"{}\" width=\"{w}\" height=\"{h}\" style=\"border: 0\" title=\"Glassbox: {}\" loading=\"lazy\"></iframe>",
        full_url(&link).replace('&', "&amp;").replace('"', "&quot;"),
        figure.name()
    )
}

fn copy_to_clipboard(text: &str) {
    if let Some(window) = web_sys::window() {
        // A promise that may be refused (no permission, no focus): the text box shows it anyway.
        let _ = window.navigator().clipboard().write_text(text);
    }
}

#[component]
pub fn ShareBar() -> impl IntoView {
    let state = use_app_state();
    let shown = RwSignal::new(None::<(&'static str, String)>);
    let chosen = RwSignal::new(None::<Figure>);
    let figures = move || {
        Figure::ALL
            .into_iter()
            .filter(|f| f.view() == state.view.get())
            .collect::<Vec<_>>()
    };
    let copy_link = move |_| {
        let url = full_url(&state.current_link());
        copy_to_clipboard(&url);
        shown.set(Some(("Link", url)));
    };
    let copy_embed = move |_| {
        let Some(figure) = chosen
            .get_untracked()
            .or_else(|| figures().first().copied())
        else {
            return;
        };
        let code = embed_code(&state.current_link(), figure);
        copy_to_clipboard(&code);
        shown.set(Some(("Embed code", code)));
    };
    view! {
        <div class="share" class:wide=move || state.view.get() == crate::state::View::Explore role="group" aria-label="Share">
            <button on:click=copy_link>"Copy link"</button>
            <Show when=move || !figures().is_empty()>
                <label class="field inline">
                    <span>"Figure"</span>
                    <select on:change=move |ev| {
                        chosen.set(Figure::ALL.into_iter().find(|f| f.name() == event_target_value(&ev)))
                    }>
                        {move || figures().into_iter().map(|f| view! { <option value=f.name()>{f.name()}</option> }).collect_view()}
                    </select>
                </label>
                <button on:click=copy_embed>"Copy embed code"</button>
            </Show>
            {move || shown.get().map(|(label, text)| view! {
                <label class="field shared">
                    <span>{label}</span>
                    <textarea readonly rows="2" aria-label=label prop:value=text></textarea>
                </label>
            })}
        </div>
    }
}
