//! The Lab: change the model and watch. Head ablation (a layers × heads grid of toggle
//! buttons; the next-token distribution before and after, with the change per token; one
//! head's attention under the ablation), the same prompt's direct logit attribution
//! (`attribution.rs`), its outlier features (`outliers.rs`) and the activation-patching sweep
//! (`patching.rs`).
//!
//! Keyboard: every head is a button (Tab moves through them, Space or Enter toggles); the shown
//! head is picked with two number fields. Every picture has a sentence beside it.

use super::attribution::AttributionPanel;
use super::controls;
use super::export::{self, grid_svg, ExportBar};
use super::heatmap;
use super::legend::attention_legend;
use super::models::model_sentence;
use super::outliers::OutliersPanel;
use super::patching::PatchingPanel;
use crate::protocol::{AblationResult, TokenChance};
use crate::state::{use_app_state, LabState};
use leptos::html::Canvas;
use leptos::prelude::*;

#[component]
pub fn LabPanel() -> impl IntoView {
    let state = use_app_state();
    view! {
        <section class="explorer lab" aria-label="Lab">
            <p class="hint">
                "Change the model and watch: switch attention heads off, or patch one run's "
                "internal state into another. Steering the chat's replies is in the settings."
            </p>
            <p class="hint model-shape">{move || model_sentence(state.engine)}</p>
            <AblationPanel />
            <OutliersPanel />
            <PatchingPanel />
        </section>
    }
}

/// The embed figure `ablation`: the ablated heads (as the link names them), the next-token
/// distributions before and after, and the shown head's attention.
#[component]
pub fn AblationFigure(lab: LabState) -> impl IntoView {
    let state = use_app_state();
    let dims = move || {
        state.engine.model.with(|m| {
            m.as_ref()
                .and_then(|m| m.summary.config.as_ref())
                .map_or((0, 0), |c| (c.n_layers, c.n_heads))
        })
    };
    view! {
        <HeadGrid dims=Signal::derive(dims) />
        <Distributions lab=lab />
        <AblatedAttention lab=lab dims=Signal::derive(dims) />
    }
}

/// What the ablation shows, in words.
pub fn ablation_status(lab: LabState) -> String {
    if lab.ablating.get().is_some() {
        return "Running the prompt with and without the ablated heads…".to_string();
    }
    match lab.ablation.get() {
        Some(r) if r.heads.is_empty() => format!(
            "No head ablated: before and after are the same ({} tokens, {:.0} ms).",
            r.tokens.len(),
            r.ms
        ),
        Some(r) => format!(
            "{} head{} ablated (output set to zero at every token); ran in {:.0} ms.",
            r.heads.len(),
            if r.heads.len() == 1 { "" } else { "s" },
            r.ms
        ),
        None => "Waiting for the model…".to_string(),
    }
}

#[component]
fn AblationPanel() -> impl IntoView {
    let state = use_app_state();
    let lab = state.lab;
    let dims = move || {
        state.engine.model.with(|m| {
            m.as_ref()
                .and_then(|m| m.summary.config.as_ref())
                .map_or((0, 0), |c| (c.n_layers, c.n_heads))
        })
    };
    view! {
        <h2>"Head ablation"</h2>
        <label class="field">
            <span>"Prompt"</span>
            <textarea
                rows="2"
                prop:value=move || lab.prompt.get()
                on:input=move |ev| lab.prompt.set(event_target_value(&ev))
            ></textarea>
        </label>
        <div class="actions">
            <button on:click=move |_| state.run_ablation() disabled=move || !state.can_ablate()>
                "Run prompt"
            </button>
            <button
                on:click=move |_| {
                    lab.ablated.set(Vec::new());
                    state.run_ablation();
                }
                disabled=move || !state.can_ablate() || lab.ablated.with(Vec::is_empty)
            >
                "Clear ablations"
            </button>
        </div>
        <p class="explorer-status" aria-live="polite" aria-busy=move || lab.ablating.get().is_some().to_string()>
            {move || ablation_status(lab)}
        </p>
        {move || lab.ablation_error.get().map(|e| view! { <p class="notice" role="alert">{e}</p> })}
        <HeadGrid dims=Signal::derive(dims) />
        <Distributions lab=lab />
        <AblatedAttention lab=lab dims=Signal::derive(dims) />
        <AttributionPanel />
    }
}

/// One toggle button per head, a row per layer.
#[component]
fn HeadGrid(dims: Signal<(usize, usize)>) -> impl IntoView {
    let state = use_app_state();
    let lab = state.lab;
    let rows = move || (0..dims.get().0).collect::<Vec<_>>();
    view! {
        <h3>"Heads"</h3>
        <p class="hint">"Each button switches one head off (pressed) or on; the prompt runs again."</p>
        <div class="head-grid" role="group" aria-label="Heads to ablate">
            <For each=rows key=|layer| *layer let:layer>
                <div class="head-row">
                    <span class="head-row-label" aria-hidden="true">{format!("L{layer}")}</span>
                    {(0..dims.get_untracked().1).map(|head| {
                        let pressed = move || lab.ablated.with(|a| a.binary_search(&(layer, head)).is_ok());
                        view! {
                            <button
                                type="button"
                                class="head-toggle"
                                aria-pressed=move || pressed().to_string()
                                aria-label=format!("Ablate layer {layer} head {head}")
                                title=format!("Layer {layer} head {head}")
                                disabled=move || !state.can_ablate()
                                on:click=move |_| state.toggle_ablation(layer, head)
                            >
                                {head}
                            </button>
                        }
                    }).collect_view()}
                </div>
            </For>
        </div>
    }
}

fn percent(p: f32) -> String {
    format!("{:.1}%", 100.0 * p)
}

/// "+3.2 pts" / "−0.4 pts": the change in percentage points.
fn change(from: f32, to: f32) -> String {
    let points = 100.0 * (to - from);
    if points >= 0.0 {
        format!("+{points:.1} pts")
    } else {
        format!("−{:.1} pts", -points)
    }
}

fn distribution_table(
    label: &'static str,
    rows: Vec<TokenChance>,
    with_change: bool,
) -> impl IntoView {
    view! {
        <table class="lens distribution" aria-label=label>
            <caption>{label}</caption>
            <thead>
                <tr>
                    <th>"Token"</th>
                    <th>"Probability"</th>
                    {with_change.then(|| view! { <th>"Change"</th> })}
                </tr>
            </thead>
            <tbody>
                {rows.into_iter().map(|row| view! {
                    <tr>
                        <td>{format!("{:?}", row.token)}</td>
                        <td>{percent(row.probability)}</td>
                        {with_change.then(|| view! { <td>{change(row.other, row.probability)}</td> })}
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The top next tokens before and after, side by side, and a sentence on the top one.
#[component]
fn Distributions(lab: LabState) -> impl IntoView {
    let summary = move || {
        let r: AblationResult = lab.ablation.get()?;
        let (before, after) = (r.before.first()?, r.after.first()?);
        Some(format!(
            "Before: {:?} is most likely ({}). After: {:?} ({}); {:?} went from {} to {}.",
            before.token,
            percent(before.probability),
            after.token,
            percent(after.probability),
            before.token,
            percent(before.probability),
            percent(before.other),
        ))
    };
    view! {
        <h3>"Next token"</h3>
        <p class="readout" aria-live="polite">{summary}</p>
        <div class="distributions">
            {move || lab.ablation.get().map(|r| view! {
                {distribution_table("Before (no ablation)", r.before, false)}
                {distribution_table("After (heads ablated)", r.after, true)}
            })}
        </div>
    }
}

/// The shown head's attention under the ablation (an ablated head still attends: only its
/// output is dropped).
#[component]
fn AblatedAttention(lab: LabState, dims: Signal<(usize, usize)>) -> impl IntoView {
    let state = use_app_state();
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let (Some(canvas), Some(r)) = (canvas.get(), lab.ablation.get()) else {
            return;
        };
        let t = r.tokens.len();
        let visible: Vec<bool> = (0..t * t).map(|i| i % t <= i / t).collect();
        heatmap::draw_matrix(&canvas, &r.attention, &visible, &r.tokens, t - 1);
    });
    let pick =
        move |label: &'static str, value: RwSignal<usize>, max: fn((usize, usize)) -> usize| {
            let last = move || max(dims.get()).saturating_sub(1);
            controls::number_input_then(label, value, last, move || state.run_ablation())
        };
    let description = move || {
        let r = lab.ablation.get()?;
        let t = r.tokens.len();
        let last = &r.attention[(t - 1) * t..];
        let (to, weight) = last
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let (layer, head) = r.shown;
        let ablated = if r.heads.contains(&r.shown) {
            " (ablated: its output is dropped, but it still attends)"
        } else {
            ""
        };
        Some(format!(
            "Layer {layer} head {head}{ablated}: the last token {:?} attends most to {:?} ({weight:.2}).",
            r.tokens[t - 1], r.tokens[to]
        ))
    };
    view! {
        <div class="frame">
        <h3>"Attention under the ablation"</h3>
        <div class="selection">
            {pick("Shown layer", lab.layer, |d| d.0)}
            {pick("Shown head", lab.head, |d| d.1)}
        </div>
        <canvas
            node_ref=canvas
            class="matrix"
            role="img"
            aria-label="Attention under the ablation"
            aria-describedby="lab-attention-description"
        ></canvas>
        {attention_legend()}
        <p id="lab-attention-description" class="readout" aria-live="polite">{description}</p>
        <ExportBar
            figure="ablated attention"
            canvas=canvas
            svg=Callback::new(move |_| lab.ablation.get_untracked().map(|r| ablated_attention_svg(&r)))
            data=Callback::new(move |_| {
                lab.ablation.get_untracked().map(|r| serde_json::to_value(&r).unwrap_or_default())
            })
            csv=Callback::new(move |_| lab.ablation.get_untracked().map(|r| ablated_attention_csv(&r)))
        />
        </div>
    }
}

/// The shown head's attention as an SVG grid: rows attend to columns, √weight on viridis as
/// on the canvas, the keys a token cannot see left blank.
fn ablated_attention_svg(r: &AblationResult) -> String {
    let t = r.tokens.len();
    let (layer, head) = r.shown;
    grid_svg(
        &format!("Attention of layer {layer} head {head} under the ablation"),
        t,
        t,
        &r.tokens,
        &r.tokens,
        |q, k| (k <= q).then(|| heatmap::viridis(r.attention[q * t + k].sqrt())),
    )
}

/// One row per attending token (its label first), one column per token attended to.
fn ablated_attention_csv(r: &AblationResult) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let t = r.tokens.len();
    let rows = r
        .tokens
        .iter()
        .enumerate()
        .map(|(q, label)| (quote(label), r.attention[q * t..(q + 1) * t].to_vec()));
    export::grid_csv("token", r.tokens.iter().map(|l| quote(l)), rows)
}
