//! The attention explorer: one head's attention matrix, the head view, the model view (every
//! head as a thumbnail), attention rollout and the logit lens, for a chat reply, free text or
//! the Order view's prompt.
//!
//! Keyboard: on the matrix, ↑/↓ move the selected token, ←/→ the head, PageUp/PageDown the
//! layer, Home/End jump to the first/last token. Every picture has a sentence beside it saying
//! what it shows, and the shown head exports as JSON and the matrix as PNG.

use super::controls::number_input;
use super::export::{grid_svg, ExportBar};
use super::heatmap::{self, GridGeometry, MatrixGeometry};
use super::legend::{attention_legend, ColourMap, Legend};
use super::models::{local_layers, model_sentence};
use super::surface;
use crate::protocol::InspectSource;
use crate::state::{use_app_state, ExplorerState};
use leptos::html::Canvas;
use leptos::prelude::*;

const DEFAULT_TEXT: &str = "The capital of France is Paris. The capital of Italy is";

/// Where token `to` gets most of token `from`'s attention in a `(t, t)` matrix.
fn strongest(values: &[f32], t: usize, from: usize) -> Option<(usize, f32)> {
    values
        .get(from * t..(from + 1) * t)?
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// What the explorer shows, in words (also the embed's status line).
pub(super) fn explorer_status(explorer: ExplorerState) -> String {
    if explorer.running.get().is_some() {
        return "Running the model with every tap on…".to_string();
    }
    match explorer.summary.get() {
        Some(s) => format!(
            "{}: {} tokens, {} layers × {} heads, captured in {:.1} s.",
            explorer.title.get(),
            s.tokens.len(),
            s.n_layers,
            s.n_heads,
            s.capture_ms / 1000.0
        ),
        None => "Inspect a reply from the chat (its Inspect button), the Order view's prompt, \
                 or any text."
            .to_string(),
    }
}

#[component]
pub fn ExplorerPanel() -> impl IntoView {
    let state = use_app_state();
    let explorer = state.explorer;
    let text = RwSignal::new(DEFAULT_TEXT.to_string());
    let inspect_text = move || {
        state.inspect(
            "Free text".into(),
            InspectSource::Text(text.get_untracked()),
        )
    };
    let status = move || explorer_status(explorer);
    view! {
        <section class="explorer" aria-label="Attention explorer">
            <label class="field">
                <span>"Text to inspect"</span>
                <textarea
                    rows="2"
                    prop:value=move || text.get()
                    on:input=move |ev| text.set(event_target_value(&ev))
                ></textarea>
            </label>
            <div class="actions">
                <button on:click=move |_| inspect_text() disabled=move || !state.can_send()>
                    "Inspect text"
                </button>
            </div>
            <p class="explorer-status">{status}</p>
            <p class="hint model-shape">{move || model_sentence(state.engine)}</p>
            {move || explorer.error.get().map(|e| view! { <p class="notice" role="alert">{e}</p> })}
            <Show
                when=move || explorer.summary.with(Option::is_some)
                fallback=move || view! { <ExplorerPlaceholder explorer=explorer /> }
            >
                <Selection explorer=explorer />
                // Wide screens: the matrix, the head view and the lens side by side.
                <div class="figures">
                    <MatrixView explorer=explorer />
                    <HeadView explorer=explorer />
                    <LensTable explorer=explorer />
                    <ModelView explorer=explorer />
                    <RolloutView explorer=explorer />
                </div>
            </Show>
        </section>
    }
}

/// Before the first inspection: what to do, and while it runs, the figures' outlines.
#[component]
fn ExplorerPlaceholder(explorer: ExplorerState) -> impl IntoView {
    view! {
        <Show
            when=move || explorer.running.get().is_some()
            fallback=|| view! {
                <p class="empty-state">
                    "Nothing inspected yet. Press “Inspect text” to see the attention of every "
                    "head for the text above, or “Inspect” under a chat reply."
                </p>
            }
        >
            <div class="figures" aria-hidden="true">
                <div class="frame skeleton"></div>
                <div class="frame skeleton"></div>
                <div class="frame skeleton"></div>
            </div>
        </Show>
    }
}

/// Layer, head and token pickers (the keyboard's other way in).
#[component]
pub(super) fn Selection(explorer: ExplorerState) -> impl IntoView {
    let dims = move || {
        explorer.summary.with(|s| {
            s.as_ref()
                .map_or((1, 1, 1), |s| (s.n_layers, s.n_heads, s.tokens.len()))
        })
    };
    view! {
        <div class="selection">
            {number_input("Layer", explorer.layer, move || dims().0 - 1)}
            <span class="hint layer-kind">{move || {
                let (local, window) = local_layers(use_app_state().engine)?;
                let layer = explorer.layer.get();
                Some(if local.get(layer).copied().unwrap_or(false) {
                    format!("local layer ({window}-token window)")
                } else {
                    "global layer".to_string()
                })
            }}</span>
            {number_input("Head", explorer.head, move || dims().1 - 1)}
            {number_input("Token", explorer.token, move || dims().2 - 1)}
            <span class="hint">"On the matrix: ↑/↓ token, ←/→ head, PageUp/PageDown layer"</span>
        </div>
    }
}

fn label(explorer: ExplorerState, i: usize) -> String {
    explorer.summary.with_untracked(|s| {
        s.as_ref()
            .and_then(|s| s.tokens.get(i).cloned())
            .unwrap_or_default()
    })
}

#[component]
pub(super) fn MatrixView(explorer: ExplorerState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let geometry = RwSignal::new(None::<MatrixGeometry>);
    let hover = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let (Some(canvas), Some(data)) = (canvas.get(), explorer.head_data.get()) else {
            return;
        };
        let token = explorer.token.get();
        explorer.summary.with(|s| {
            if let Some(s) = s {
                geometry.set(heatmap::draw_matrix(
                    &canvas,
                    &data.probs,
                    &s.visible,
                    &s.tokens,
                    token,
                ));
            }
        });
    });
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let Some((layers, heads, t)) = explorer
            .summary
            .with_untracked(|s| s.as_ref().map(|s| (s.n_layers, s.n_heads, s.tokens.len())))
        else {
            return;
        };
        let step = |signal: RwSignal<usize>, up: bool, max: usize| {
            signal.update(|v| {
                *v = if up {
                    (*v + 1).min(max - 1)
                } else {
                    v.saturating_sub(1)
                }
            })
        };
        match ev.key().as_str() {
            "ArrowUp" => step(explorer.token, false, t),
            "ArrowDown" => step(explorer.token, true, t),
            "ArrowLeft" => step(explorer.head, false, heads),
            "ArrowRight" => step(explorer.head, true, heads),
            "PageUp" => step(explorer.layer, false, layers),
            "PageDown" => step(explorer.layer, true, layers),
            "Home" => explorer.token.set(0),
            "End" => explorer.token.set(t - 1),
            _ => return,
        }
        ev.prevent_default();
    };
    let cell_at = move |ev: &web_sys::MouseEvent| {
        geometry
            .get_untracked()
            .zip(surface::pointer_on(ev))
            .and_then(|(g, (x, y))| g.cell_at(x, y))
    };
    let on_move = move |ev: web_sys::MouseEvent| {
        let text = cell_at(&ev).and_then(|(i, j)| {
            let data = explorer.head_data.get_untracked()?;
            let t = explorer
                .summary
                .with_untracked(|s| s.as_ref().map(|s| s.tokens.len()))?;
            Some(format!(
                "{:?} → {:?}: {:.4}",
                label(explorer, i),
                label(explorer, j),
                data.probs[i * t + j]
            ))
        });
        hover.set(text);
    };
    let on_click = move |ev: web_sys::MouseEvent| {
        if let Some((i, _)) = cell_at(&ev) {
            explorer.token.set(i);
        }
    };
    let description = move || {
        let data = explorer.head_data.get()?;
        let token = explorer.token.get();
        let t = explorer
            .summary
            .with(|s| s.as_ref().map(|s| s.tokens.len()))?;
        let (to, weight) = strongest(&data.probs, t, token)?;
        Some(format!(
            "Layer {} head {}: token {:?} attends most to {:?} ({:.2}).",
            data.layer,
            data.head,
            label(explorer, token),
            label(explorer, to),
            weight
        ))
    };
    view! {
        <div class="frame">
        <h3>"Attention matrix"</h3>
        <p class="hint">
            "Row: the token that attends; column: the token attended to. Colour: √weight "
            "(viridis, dark = 0, yellow = 1); grey: hidden by the mask."
        </p>
        {attention_legend()}
        <canvas
            node_ref=canvas
            class="matrix"
            tabindex="0"
            role="img"
            aria-label="Attention matrix"
            aria-describedby="attention-description"
            on:keydown=on_key
            on:mousemove=on_move
            on:mouseleave=move |_| hover.set(None)
            on:click=on_click
        ></canvas>
        <p id="attention-description" class="readout" aria-live="polite">{description}</p>
        <p class="readout hover">{move || hover.get()}</p>
        <ExportBar
            figure="attention matrix"
            canvas=canvas
            svg=Callback::new(move |_| matrix_svg(explorer))
            data=Callback::new(move |_| head_json(explorer))
        />
        </div>
    }
}

/// The shown head's data as the engine computed it.
fn head_json(explorer: ExplorerState) -> Option<serde_json::Value> {
    let summary = explorer.summary.get_untracked()?;
    let data = explorer.head_data.get_untracked()?;
    let t = summary.tokens.len();
    Some(serde_json::json!({
        "source": explorer.title.get_untracked(),
        "ids": summary.ids,
        "tokens": summary.tokens,
        "positions": summary.positions,
        "layer": data.layer,
        "head": data.head,
        "probs": data.probs.chunks(t).collect::<Vec<_>>(),
        "scores": data.scores.chunks(t).collect::<Vec<_>>(),
    }))
}

/// A `(t, t)` matrix in the heatmap's colours, as SVG.
fn token_matrix_svg(title: &str, values: &[f32], visible: &[bool], tokens: &[String]) -> String {
    let t = tokens.len();
    grid_svg(title, t, t, tokens, tokens, |i, j| {
        Some(if visible.get(i * t + j).copied().unwrap_or(true) {
            heatmap::viridis(values[i * t + j].max(0.0).sqrt())
        } else {
            [215, 215, 215]
        })
    })
}

fn matrix_svg(explorer: ExplorerState) -> Option<String> {
    let summary = explorer.summary.get_untracked()?;
    let data = explorer.head_data.get_untracked()?;
    let title = format!("Attention, layer {} head {}", data.layer, data.head);
    Some(token_matrix_svg(
        &title,
        &data.probs,
        &summary.visible,
        &summary.tokens,
    ))
}

#[component]
fn HeadView(explorer: ExplorerState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let (Some(canvas), Some(data)) = (canvas.get(), explorer.head_data.get()) else {
            return;
        };
        let token = explorer.token.get();
        explorer.summary.with(|s| {
            if let Some(s) = s {
                let t = s.tokens.len();
                if let Some(row) = data.probs.get(token * t..(token + 1) * t) {
                    heatmap::draw_head_view(&canvas, row, &s.tokens, token);
                }
            }
        });
    });
    view! {
        <div class="frame">
        <h3>"Head view"</h3>
        <p class="hint">"Lines from the selected token (left) to the tokens it attends to (right)."</p>
        <Legend
            map=ColourMap::ViridisSqrt
            caption="attention weight (√ scale): a line's colour; its width and opacity grow with it"
            low="0"
            high="1"
        />
        <canvas node_ref=canvas role="img" aria-label="Head view" aria-describedby="attention-description"></canvas>
        <ExportBar
            figure="head view"
            canvas=canvas
            svg=Callback::new(move |_| head_view_svg(explorer))
            data=Callback::new(move |_| head_json(explorer))
        />
        </div>
    }
}

/// The head view as SVG: a line from the selected token to each token, as strong as its weight.
fn head_view_svg(explorer: ExplorerState) -> Option<String> {
    let summary = explorer.summary.get_untracked()?;
    let data = explorer.head_data.get_untracked()?;
    let (t, token) = (summary.tokens.len(), explorer.token.get_untracked());
    let row = data.probs.get(token * t..(token + 1) * t)?;
    let (h, w) = (t * 14 + 20, 420);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<title>Head view, layer {} head {}</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
        data.layer, data.head
    );
    let y = |i: usize| 16 + i * 14;
    for (i, label) in summary.tokens.iter().enumerate() {
        let label: String = label.chars().take(16).collect();
        let label = label
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let weight = if i == token { "bold" } else { "normal" };
        out += &format!("<text x=\"130\" y=\"{}\" font-size=\"10\" font-family=\"sans-serif\" text-anchor=\"end\" font-weight=\"{weight}\">{label}</text>\n", y(i));
        out += &format!(
            "<text x=\"290\" y=\"{}\" font-size=\"10\" font-family=\"sans-serif\">{label}</text>\n",
            y(i)
        );
    }
    for (j, &p) in row.iter().enumerate().filter(|(_, &p)| p > 0.0) {
        out += &format!(
            "<line x1=\"135\" y1=\"{}\" x2=\"285\" y2=\"{}\" stroke=\"#3b528b\" stroke-width=\"2\" stroke-opacity=\"{:.3}\"/>\n",
            y(token) - 3,
            y(j) - 3,
            p.sqrt()
        );
    }
    Some(out + "</svg>\n")
}

/// The model view as SVG: every head's thumbnail, layers down, heads across.
fn model_view_svg(explorer: ExplorerState) -> Option<String> {
    let s = explorer.summary.get_untracked()?;
    let side = s.thumbnail_side;
    let (rows, cols) = (s.n_layers * side, s.n_heads * side);
    Some(grid_svg(
        "Model view: every layer and head",
        rows,
        cols,
        &[],
        &[],
        |y, x| {
            let (layer, head) = (y / side, x / side);
            let v = s.thumbnails[((layer * s.n_heads + head) * side + y % side) * side + x % side];
            Some(heatmap::viridis(v as f32 / 255.0))
        },
    ))
}

#[component]
pub(super) fn ModelView(explorer: ExplorerState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let geometry = RwSignal::new(None::<GridGeometry>);
    let engine = use_app_state().engine;
    Effect::new(move |_| {
        let Some(canvas) = canvas.get() else { return };
        let selected = (explorer.layer.get(), explorer.head.get());
        let local = local_layers(engine).map(|l| l.0).unwrap_or_default();
        explorer.summary.with(|s| {
            if let Some(s) = s {
                geometry.set(heatmap::draw_grid(
                    &canvas,
                    &s.thumbnails,
                    s.n_layers,
                    s.n_heads,
                    s.thumbnail_side,
                    selected,
                    &local,
                ));
            }
        });
    });
    let on_click = move |ev: web_sys::MouseEvent| {
        if let Some((layer, head)) = geometry
            .get_untracked()
            .zip(surface::pointer_on(&ev))
            .and_then(|(g, (x, y))| g.cell_at(x, y))
        {
            explorer.layer.set(layer);
            explorer.head.set(head);
        }
    };
    view! {
        <div class="frame">
        <h3>"Model view"</h3>
        <p class="hint">
            "Every head of every layer (rows: layers, columns: heads); click one to open it."
            {move || local_layers(engine).map(|_| " An orange bar at a row's left: a local (sliding-window) layer.")}
        </p>
        <canvas
            node_ref=canvas
            role="img"
            aria-label="Model view: every layer and head; choose one with the Layer and Head fields"
            on:click=on_click
        ></canvas>
        {attention_legend()}
        <ExportBar
            figure="model view"
            canvas=canvas
            svg=Callback::new(move |_| model_view_svg(explorer))
            data=Callback::new(move |_| {
                explorer.summary.get_untracked().map(|s| serde_json::json!({
                    "layers": s.n_layers,
                    "heads": s.n_heads,
                    "thumbnail_side": s.thumbnail_side,
                    "thumbnails_255_sqrt_weight": s.thumbnails,
                }))
            })
        />
        </div>
    }
}

#[component]
pub(super) fn RolloutView(explorer: ExplorerState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let Some(canvas) = canvas.get() else { return };
        let token = explorer.token.get();
        explorer.summary.with(|s| {
            if let Some(s) = s {
                heatmap::draw_matrix(&canvas, &s.rollout, &s.visible, &s.tokens, token);
            }
        });
    });
    let description = move || {
        let token = explorer.token.get();
        explorer.summary.with(|s| {
            let s = s.as_ref()?;
            let t = s.tokens.len();
            // The token itself always keeps a large share: name the strongest other one.
            let (to, weight) = s.rollout[token * t..(token + 1) * t]
                .iter()
                .copied()
                .enumerate()
                .filter(|&(j, _)| j != token)
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            Some(format!(
                "Across all layers, token {:?} draws most on {:?} ({:.2}), besides itself.",
                s.tokens[token], s.tokens[to], weight
            ))
        })
    };
    view! {
        <div class="frame">
        <h3>"Attention rollout"</h3>
        <p class="hint">"Attention chained through all layers, with the residual connection (Abnar & Zuidema, 2020)."</p>
        <Legend
            map=ColourMap::ViridisSqrt
            caption="rolled-out attention (√ scale); grey: hidden by the mask"
            low="0"
            high="1"
        />
        <canvas node_ref=canvas role="img" aria-label="Attention rollout" aria-describedby="rollout-description"></canvas>
        <p id="rollout-description" class="readout">{description}</p>
        <ExportBar
            figure="attention rollout"
            canvas=canvas
            svg=Callback::new(move |_| {
                explorer.summary.get_untracked().map(|s| {
                    token_matrix_svg("Attention rollout", &s.rollout, &s.visible, &s.tokens)
                })
            })
            data=Callback::new(move |_| {
                explorer.summary.get_untracked().map(|s| {
                    let t = s.tokens.len();
                    serde_json::json!({
                        "tokens": s.tokens,
                        "rollout": s.rollout.chunks(t).collect::<Vec<_>>(),
                    })
                })
            })
        />
        </div>
    }
}

#[component]
fn LensTable(explorer: ExplorerState) -> impl IntoView {
    let rows = move || {
        explorer
            .lens
            .get()
            .map(|lens| lens.layers.into_iter().enumerate().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    view! {
        <div class="frame lens-frame">
        <h3>"Logit lens"</h3>
        <p class="hint">
            {move || format!(
                "What the model would predict after token {:?} if it stopped after each layer.",
                label(explorer, explorer.token.get())
            )}
        </p>
        <table class="lens" aria-label="Logit lens">
            <thead><tr><th>"Layer"</th><th>"Top token"</th><th>"Probability"</th><th>"Next"</th></tr></thead>
            <tbody>
                <For each=rows key=|(layer, row)| (*layer, format!("{row:?}")) let:item>
                    <tr>
                        <td>{item.0}</td>
                        <td>{item.1.first().map(|(t, _)| format!("{t:?}"))}</td>
                        <td>{item.1.first().map(|(_, p)| format!("{p:.3}"))}</td>
                        <td>{item.1.iter().skip(1).map(|(t, p)| format!("{t:?} {p:.3}")).collect::<Vec<_>>().join(", ")}</td>
                    </tr>
                </For>
            </tbody>
        </table>
        </div>
    }
}
