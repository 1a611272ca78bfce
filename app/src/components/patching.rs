//! The Lab's activation-patching sweep: two prompts that differ in one fact, Run and Stop,
//! and the heatmap of how much of the clean answer each patched state brings back (layers
//! down, tokens across), with its exports and a text alternative (the strongest cells).

use super::export::{self, grid_svg, ExportBar};
use super::heatmap;
use super::legend::{ColourMap, Legend};
use super::surface;
use crate::protocol::PatchingResult;
use crate::state::{use_app_state, LabState};
use leptos::html::Canvas;
use leptos::prelude::*;

/// How many of the strongest cells the text alternative lists.
const STRONGEST: usize = 5;

/// A cell's share of the clean answer brought back: 0 at the corrupted run's log-prob, 1 at
/// the clean run's, the usual scale of causal tracing; negative where the patch pushed the
/// answer further away (clamped to [-1, 1]).
fn recovered(sweep: &PatchingResult, logprob: f32) -> f32 {
    let span = sweep.clean_logprob - sweep.corrupt_logprob;
    if span.abs() < 1e-6 {
        return 0.0;
    }
    ((logprob - sweep.corrupt_logprob) / span).clamp(-1.0, 1.0)
}

/// A token axis label: the clean token, and the corrupted one where they differ.
fn token_labels(sweep: &PatchingResult) -> Vec<String> {
    sweep
        .clean_tokens
        .iter()
        .zip(&sweep.corrupt_tokens)
        .map(|(c, k)| {
            if c == k {
                c.clone()
            } else {
                format!("{c}/{k}")
            }
        })
        .collect()
}

fn layer_labels(sweep: &PatchingResult) -> Vec<String> {
    (0..sweep.effect.len()).map(|l| l.to_string()).collect()
}

/// The `STRONGEST` cells, by log-prob of the target, as (layer, token, log-prob).
fn strongest(sweep: &PatchingResult) -> Vec<(usize, usize, f32)> {
    let mut cells: Vec<(usize, usize, f32)> = sweep
        .effect
        .iter()
        .enumerate()
        .flat_map(|(l, row)| row.iter().enumerate().map(move |(t, &v)| (l, t, v)))
        .collect();
    cells.sort_by(|a, b| b.2.total_cmp(&a.2));
    cells.truncate(STRONGEST);
    cells
}

/// What the sweep shows, in words (also the embed's status line).
pub(super) fn patching_status(lab: LabState) -> String {
    if let Some((done, total)) = lab.progress.get() {
        return format!("Patched {done} of {total} runs (layers × tokens)…");
    }
    if lab.sweeping.get().is_some() {
        return "Running the clean and corrupted prompts…".to_string();
    }
    match lab.sweep.get() {
        Some(s) => format!(
            "Target {:?}: log-prob {:.2} after the clean prompt, {:.2} after the corrupted one. \
             {} patched runs in {:.0} ms on {}.",
            s.target,
            s.clean_logprob,
            s.corrupt_logprob,
            s.effect.len() * s.clean_tokens.len(),
            s.sweep_ms,
            s.backend
        ),
        None => "Run the sweep: one run of the corrupted prompt per layer and token, with that \
                 state taken from the clean prompt."
            .to_string(),
    }
}

#[component]
pub fn PatchingPanel() -> impl IntoView {
    let state = use_app_state();
    let lab = state.lab;
    let prompt_box = |label: &'static str, value: RwSignal<String>| {
        view! {
            <label class="field">
                <span>{label}</span>
                <textarea
                    rows="2"
                    prop:value=move || value.get()
                    on:input=move |ev| value.set(event_target_value(&ev))
                ></textarea>
            </label>
        }
    };
    view! {
        <h2>"Activation patching"</h2>
        <p class="hint">
            "The corrupted prompt is run once per layer and token with the residual stream there "
            "taken from the clean prompt: where that brings the clean answer back, the fact lives."
        </p>
        {prompt_box("Clean prompt", lab.clean)}
        {prompt_box("Corrupted prompt", lab.corrupt)}
        <div class="actions">
            <button on:click=move |_| state.run_sweep() disabled=move || !state.can_send()>
                "Run patching sweep"
            </button>
            <button on:click=move |_| lab.stop_sweep() disabled=move || lab.sweeping.get().is_none()>
                "Stop sweep"
            </button>
            {move || lab.progress.get().map(|(done, total)| view! {
                <progress max=total.to_string() value=done.to_string() aria-label="Patching progress"></progress>
            })}
        </div>
        <p class="explorer-status patching-status" aria-live="polite">{move || patching_status(lab)}</p>
        {move || lab.sweep_error.get().map(|e| view! { <p class="notice" role="alert">{e}</p> })}
        <PatchingFigure lab=lab />
    }
}

#[component]
pub(super) fn PatchingFigure(lab: LabState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let (Some(canvas), Some(sweep)) = (canvas.get(), lab.sweep.get()) else {
            return;
        };
        let ground = surface::palette(&canvas).ground;
        let colours: Vec<[u8; 3]> = sweep
            .effect
            .iter()
            .flatten()
            .map(|&v| heatmap::diverging_on(recovered(&sweep, v), ground))
            .collect();
        let (rows, cols) = (layer_labels(&sweep), token_labels(&sweep));
        let cell = heatmap::cell_side(rows.len(), cols.len());
        heatmap::draw_colour_grid(&canvas, &colours, &rows, &cols, (cell, cell));
    });
    let cells = move || {
        let sweep = lab.sweep.get()?;
        let labels = token_labels(&sweep);
        Some(
            strongest(&sweep)
                .into_iter()
                .map(|(layer, token, logprob)| {
                    format!(
                        "Layer {layer}, token {:?}: log-prob {logprob:.2} ({:.0}% of the clean answer back)",
                        labels[token],
                        100.0 * recovered(&sweep, logprob)
                    )
                })
                .map(|line| view! { <li>{line}</li> })
                .collect_view(),
        )
    };
    view! {
        <Show when=move || lab.sweep.with(Option::is_some)>
            <div class="frame">
            <h3>"Patching heatmap"</h3>
            <p class="hint">
                "Rows: layers (0 at the top); columns: tokens (clean/corrupted where they differ). "
                "Colour: the share of the clean answer's log-prob brought back: red = all of it, the "
                "ground = none, blue = pushed the other way."
            </p>
            <canvas
                node_ref=canvas
                class="matrix"
                role="img"
                aria-label="Patching heatmap"
                aria-describedby="patching-description"
            ></canvas>
            <Legend
                map=ColourMap::Diverging
                caption="share of the clean answer's log-prob brought back by the patch"
                low="−1 (pushed away)"
                high="1 (all of it)"
            />
            <div id="patching-description" class="readout">
                <p>"The strongest cells:"</p>
                <ol>{cells}</ol>
            </div>
            <ExportBar
                figure="patching heatmap"
                canvas=canvas
                svg=Callback::new(move |_| patching_svg(lab))
                data=Callback::new(move |_| {
                    lab.sweep.get_untracked().map(|s| serde_json::to_value(&s).unwrap_or_default())
                })
                csv=Callback::new(move |_| lab.sweep.get_untracked().map(|s| patching_csv(&s)))
            />
            </div>
        </Show>
    }
}

fn patching_svg(lab: LabState) -> Option<String> {
    let sweep = lab.sweep.get_untracked()?;
    let title = format!("Activation patching: log-prob of {:?}", sweep.target);
    Some(grid_svg(
        &title,
        sweep.effect.len(),
        sweep.clean_tokens.len(),
        &layer_labels(&sweep),
        &token_labels(&sweep),
        |l, t| Some(heatmap::diverging(recovered(&sweep, sweep.effect[l][t]))),
    ))
}

/// One row per layer, one column per token (the header names the tokens), the target's
/// log-prob in each cell.
fn patching_csv(sweep: &PatchingResult) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    export::grid_csv(
        "layer",
        token_labels(sweep).iter().map(|l| quote(l)),
        sweep
            .effect
            .iter()
            .enumerate()
            .map(|(layer, row)| (layer.to_string(), row.clone())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep() -> PatchingResult {
        PatchingResult {
            clean_ids: vec![1, 2],
            corrupt_ids: vec![1, 3],
            clean_tokens: vec!["A".into(), " \"x\"".into()],
            corrupt_tokens: vec!["A".into(), " y".into()],
            target: " z".into(),
            target_id: 9,
            clean_logprob: -1.0,
            corrupt_logprob: -5.0,
            effect: vec![vec![-5.0, -1.0], vec![-3.0, -7.0]],
            sweep_ms: 1.0,
            backend: "CPU".into(),
        }
    }

    #[test]
    fn cells_scale_from_the_corrupted_to_the_clean_log_prob() {
        let s = sweep();
        assert_eq!(recovered(&s, -5.0), 0.0);
        assert_eq!(recovered(&s, -3.0), 0.5);
        assert_eq!(recovered(&s, 0.0), 1.0);
        assert_eq!(recovered(&s, -7.0), -0.5);
        assert_eq!(recovered(&s, -99.0), -1.0);
        assert_eq!(strongest(&s)[0], (0, 1, -1.0));
    }

    #[test]
    fn the_csv_has_a_row_per_layer_and_quotes_tokens() {
        let csv = patching_csv(&sweep());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "layer,\"A\",\" \"\"x\"\"/ y\"");
        assert_eq!(lines[1], "0,-5,-1");
        assert_eq!(lines[2], "1,-3,-7");
    }
}
