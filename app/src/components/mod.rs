//! The page's components. State lives in signals ([`crate::state`]); heavy work goes to the
//! engine worker.

mod attention_policy;
mod attribution;
mod chat;
mod controls;
mod explorer;
mod export;
mod heatmap;
mod lab;
mod legend;
mod load_panel;
mod models;
mod order;
mod outliers;
mod patching;
mod settings;
mod share;
mod status_bar;
mod surface;
mod theme;
mod tour;
mod vision;
mod welcome;

use crate::deep_link::{Figure, Link};
use crate::state::{provide_app_state, use_app_state, View};
use leptos::prelude::*;

pub use chat::ChatPanel;
pub use explorer::ExplorerPanel;
pub use lab::LabPanel;
pub use load_panel::LoadPanel;
pub use order::OrderPanel;
pub use settings::SidePanel;
pub use status_bar::StatusBar;
pub use vision::VisionPanel;

#[component]
pub fn App() -> impl IntoView {
    let state = provide_app_state();
    theme::provide_scheme_epoch();
    state.start();
    if let Some(figure) = state.embed {
        return view! { <EmbedFigure figure=figure /> }.into_any();
    }
    let view_shown = state.view;
    // Explore sets its figures side by side: it takes a wide screen's width.
    let wide = move || view_shown.get() == View::Explore;
    drop_target(state.models);
    let tab = move |which: View, label: &'static str| {
        view! {
            <button
                role="tab"
                aria-selected=move || (view_shown.get() == which).to_string()
                on:click=move |_| view_shown.set(which)
            >
                {label}
            </button>
        }
    };
    view! {
        <header>
            <h1>"Glassbox"</h1>
            <StatusBar />
            <tour::Tour />
            <theme::ThemeSwitch />
        </header>
        <nav class="views" class:wide=wide role="tablist" aria-label="Views">
            {tab(View::Chat, "Chat")}
            {tab(View::Order, "Order")}
            {tab(View::Explore, "Explore")}
            {tab(View::Vision, "Vision")}
            {tab(View::Lab, "Lab")}
        </nav>
        <share::ShareBar />
        <main class="layout" class:wide=wide>
            <section class="chat-column" aria-label="Chat">
                <welcome::Welcome />
                <LoadPanel />
                {move || match view_shown.get() {
                    View::Chat => view! { <ChatPanel /> }.into_any(),
                    View::Order => view! { <OrderPanel /> }.into_any(),
                    View::Explore => view! { <ExplorerPanel /> }.into_any(),
                    View::Vision => view! { <VisionPanel /> }.into_any(),
                    View::Lab => view! { <LabPanel /> }.into_any(),
                }}
            </section>
            <SidePanel />
        </main>
    }
    .into_any()
}

/// A GGUF file dropped anywhere on the page is opened like one chosen with "Open a GGUF file".
fn drop_target(models: crate::state::ModelsState) {
    let files = |ev: &web_sys::DragEvent| {
        ev.data_transfer().is_some_and(|d| {
            d.types()
                .iter()
                .any(|t| t.as_string().as_deref() == Some("Files"))
        })
    };
    let over = window_event_listener(leptos::ev::dragover, move |ev| {
        if files(&ev) {
            ev.prevent_default();
            models.dragging.set(true);
        }
    });
    let leave = window_event_listener(leptos::ev::dragleave, move |ev| {
        // Leaving the window, not moving between the page's elements.
        if ev.related_target().is_none() {
            models.dragging.set(false);
        }
    });
    let drop = window_event_listener(leptos::ev::drop, move |ev| {
        models.dragging.set(false);
        let Some(file) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|files| files.get(0))
        else {
            return;
        };
        ev.prevent_default();
        models.open_file(file);
    });
    on_cleanup(move || {
        over.remove();
        leave.remove();
        drop.remove();
    });
}

/// Embed mode: one figure and its minimal controls, sized for an `<iframe>`, with a status line
/// and a link to the whole page.
#[component]
fn EmbedFigure(figure: Figure) -> impl IntoView {
    let state = use_app_state();
    let (explorer, vision, lab) = (state.explorer, state.vision, state.lab);
    let figure_view = match figure {
        Figure::Matrix => view! {
            <explorer::Selection explorer=explorer />
            <explorer::MatrixView explorer=explorer />
        }
        .into_any(),
        Figure::Rollout => view! { <explorer::RolloutView explorer=explorer /> }.into_any(),
        Figure::Heads => view! {
            <explorer::Selection explorer=explorer />
            <explorer::ModelView explorer=explorer />
        }
        .into_any(),
        Figure::Vit => view! {
            <vision::Probabilities vision=vision which="ViT" />
            <vision::VitInsides vision=vision />
        }
        .into_any(),
        Figure::Vir => view! {
            <vision::Probabilities vision=vision which="ViR" />
            <vision::VirInsides vision=vision />
        }
        .into_any(),
        Figure::Order => view! { <OrderPanel /> }.into_any(),
        Figure::Ablation => view! { <lab::AblationFigure lab=lab /> }.into_any(),
        Figure::Patching => view! { <patching::PatchingFigure lab=lab /> }.into_any(),
        Figure::Attribution => view! { <attribution::AttributionFigure lab=lab /> }.into_any(),
        Figure::Outliers => view! { <outliers::OutliersFigure lab=lab /> }.into_any(),
    };
    let ready = move || match figure.view() {
        View::Explore => explorer.summary.with(Option::is_some),
        View::Vision => vision.report.with(Option::is_some),
        View::Lab => match figure {
            Figure::Ablation => lab.ablation.with(Option::is_some),
            Figure::Attribution => lab.attribution.with(Option::is_some),
            Figure::Outliers => lab.outliers.with(Option::is_some),
            _ => lab.sweep.with(Option::is_some),
        },
        _ => true,
    };
    let status = move || match figure.view() {
        View::Explore => explorer::explorer_status(explorer),
        View::Vision => vision
            .error
            .get()
            .unwrap_or_else(|| vision::vision_status(vision)),
        View::Lab => match figure {
            Figure::Ablation => lab
                .ablation_error
                .get()
                .unwrap_or_else(|| lab::ablation_status(lab)),
            Figure::Attribution => lab
                .attribution_error
                .get()
                .unwrap_or_else(|| attribution::attribution_status(lab)),
            Figure::Outliers => lab
                .outliers_error
                .get()
                .unwrap_or_else(|| outliers::outliers_status(lab)),
            _ => lab
                .sweep_error
                .get()
                .unwrap_or_else(|| patching::patching_status(lab)),
        },
        _ => String::new(),
    };
    let whole_page = move || {
        let mut link: Link = state.current_link();
        link.embed = None;
        share::full_url(&link)
    };
    view! {
        <main class="embed" aria-label=format!("Glassbox figure: {}", figure.name())>
            <Show when=move || figure.needs_chat_model()>
                <LoadPanel />
            </Show>
            <p class="embed-status" role="status">{status}</p>
            <div class="embed-figure" class:waiting=move || !ready()>{figure_view}</div>
            <p class="embed-footer">
                <a href=whole_page target="_blank" rel="noopener">"Open in Glassbox"</a>
            </p>
        </main>
    }
}
