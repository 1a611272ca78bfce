//! The Lab's outlier features: each residual dimension's largest magnitude after every block
//! (layers × dimensions, on a log colour scale: the values span six orders of magnitude), the
//! dimensions that stand out named in a list, and the prompt's next tokens with activations in
//! f32, rounded to 8 bits per block (llama.cpp) and rounded with outliers kept wide
//! (LLM.int8), one at a time by a radio group.

use super::export::{self, grid_svg, ExportBar};
use super::heatmap;
use super::legend::{ColourMap, Legend};
use crate::deep_link::PRECISIONS;
use crate::protocol::OutlierResult;
use crate::state::{use_app_state, LabState};
use leptos::html::Canvas;
use leptos::prelude::*;

/// The precision runs' names on the page, in the engine's order.
const RUN_LABELS: [&str; 3] = [
    "f32",
    "8-bit per block (llama.cpp)",
    "8-bit, outliers kept wide (LLM.int8)",
];
/// A dimension's column is this many pixels wide, a layer's row this many high.
const CELL: (usize, usize) = (2, 8);
/// The log scale's floor: smaller magnitudes are drawn as this.
const FLOOR: f32 = 1e-3;

/// The log colour scale's ends, log10 of the smallest and largest magnitude (above `FLOOR`).
fn log_range(r: &OutlierResult) -> (f32, f32) {
    let (lo, hi) = r
        .magnitudes
        .iter()
        .flatten()
        .fold((f32::MAX, 0.0f32), |(lo, hi), &v| {
            (lo.min(v.max(FLOOR)), hi.max(v))
        });
    (lo.log10(), hi.max(lo * 10.0).log10())
}

fn colour(v: f32, (lo, hi): (f32, f32)) -> [u8; 3] {
    heatmap::viridis((v.max(FLOOR).log10() - lo) / (hi - lo).max(1e-6))
}

fn layer_labels(r: &OutlierResult) -> Vec<String> {
    (0..r.magnitudes.len()).map(|l| format!("L{l}")).collect()
}

fn dimension_labels(r: &OutlierResult) -> Vec<String> {
    let d = r.magnitudes.first().map_or(0, Vec::len);
    (0..d).map(|i| i.to_string()).collect()
}

/// "22,552" (thousands marked: the magnitudes are read at a glance).
fn grouped(v: f32) -> String {
    if v.abs() < 1000.0 {
        return format!("{v:.2}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// What the measure shows, in words (also the embed's status line).
pub(super) fn outliers_status(lab: LabState) -> String {
    if lab.measuring.get().is_some() {
        return "Measuring the residual stream and running the prompt in three precisions…"
            .to_string();
    }
    match lab.outliers.get() {
        Some(r) => format!(
            "{} layers × {} dimensions over {} tokens; {} outlier dimension{}; measured in {:.0} ms.",
            r.magnitudes.len(),
            r.magnitudes.first().map_or(0, Vec::len),
            r.tokens.len(),
            r.outliers.len(),
            if r.outliers.len() == 1 { "" } else { "s" },
            r.ms
        ),
        None => "Measure: the prompt's residual stream after every block, and its next tokens \
                 in three precisions (a few seconds on the CPU)."
            .to_string(),
    }
}

#[component]
pub fn OutliersPanel() -> impl IntoView {
    let state = use_app_state();
    let lab = state.lab;
    view! {
        <h2>"Outlier features"</h2>
        <p class="hint">
            "A few dimensions of the residual stream carry values far larger than the rest. "
            "Rounding activations to 8 bits per block lets them set the block's scale and drowns "
            "the small values beside them; keeping them wide (LLM.int8) avoids that. Runs the "
            "ablation's prompt."
        </p>
        <div class="actions">
            <button on:click=move |_| state.measure_outliers() disabled=move || !state.can_send()>
                "Measure"
            </button>
        </div>
        <p class="explorer-status outliers-status" aria-live="polite" aria-busy=move || lab.measuring.get().is_some().to_string()>
            {move || outliers_status(lab)}
        </p>
        {move || lab.outliers_error.get().map(|e| view! { <p class="notice" role="alert">{e}</p> })}
        <OutliersFigure lab=lab />
    }
}

#[component]
pub(super) fn OutliersFigure(lab: LabState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let (Some(canvas), Some(r)) = (canvas.get(), lab.outliers.get()) else {
            return;
        };
        let range = log_range(&r);
        let colours: Vec<[u8; 3]> = r
            .magnitudes
            .iter()
            .flatten()
            .map(|&v| colour(v, range))
            .collect();
        heatmap::draw_colour_grid(
            &canvas,
            &colours,
            &layer_labels(&r),
            &dimension_labels(&r),
            CELL,
        );
    });
    let scale_line = move || {
        let r = lab.outliers.get()?;
        let (lo, hi) = log_range(&r);
        Some(format!(
            "Colour: log10 of the largest |value| over the tokens, from {} (dark) to {} (yellow).",
            grouped(10f32.powf(lo)),
            grouped(10f32.powf(hi))
        ))
    };
    let dimensions = move || {
        let r = lab.outliers.get()?;
        let layers = r.magnitudes.len();
        Some(
            r.outliers
                .iter()
                .map(|o| {
                    let line = format!(
                        "Dimension {}: largest {} (after block {}), stands out in {} of {} layers",
                        o.dimension,
                        grouped(o.largest),
                        o.layer,
                        o.layers,
                        layers
                    );
                    view! { <li>{line}</li> }
                })
                .collect_view(),
        )
    };
    view! {
        <Show when=move || lab.outliers.with(Option::is_some)>
            <div class="frame">
            <h3>"Residual magnitudes"</h3>
            <p class="hint">"Rows: layers (after each block, 0 at the top); columns: the residual stream's dimensions."</p>
            <p class="hint">{scale_line}</p>
            <canvas
                node_ref=canvas
                class="matrix wide"
                role="img"
                aria-label="Outlier features heatmap"
                aria-describedby="outliers-description"
            ></canvas>
            <Legend
                map=ColourMap::Viridis
                caption="largest |value| over the tokens (log scale)"
                low=Signal::derive(move || lab.outliers.with(|r| r.as_ref().map_or(String::new(), |r| grouped(10f32.powf(log_range(r).0)))))
                high=Signal::derive(move || lab.outliers.with(|r| r.as_ref().map_or(String::new(), |r| grouped(10f32.powf(log_range(r).1)))))
            />
            <div id="outliers-description" class="readout">
                <p>"The dimensions that stand out (over 20 times the layer's median):"</p>
                <ul class="outlier-dimensions">{dimensions}</ul>
            </div>
            <ExportBar
                figure="outlier features"
                canvas=canvas
                svg=Callback::new(move |_| outliers_svg(lab))
                data=Callback::new(move |_| {
                    lab.outliers.get_untracked().map(|r| serde_json::to_value(&r).unwrap_or_default())
                })
                csv=Callback::new(move |_| lab.outliers.get_untracked().map(|r| outliers_csv(&r)))
            />
            </div>
            <PrecisionRuns lab=lab />
        </Show>
    }
}

/// The radio group and the run it picks: its top next tokens and its drift from f32.
#[component]
fn PrecisionRuns(lab: LabState) -> impl IntoView {
    let radios = RUN_LABELS
        .iter()
        .enumerate()
        .map(|(i, label)| {
            view! {
                <label class="radio">
                    <input
                        type="radio"
                        name="precision"
                        value=PRECISIONS[i]
                        prop:checked=move || lab.precision.get() == i
                        on:change=move |_| lab.precision.set(i)
                    />
                    {*label}
                </label>
            }
        })
        .collect_view();
    let run = move || {
        let r = lab.outliers.get()?;
        let run = r.runs.get(lab.precision.get())?.clone();
        let drift = if lab.precision.get() == 0 {
            "The reference run.".to_string()
        } else {
            format!(
                "Largest log-prob drift from f32 over f32's top 5: {:.4}",
                run.max_logprob_drift
            )
        };
        Some(view! {
            <p class="readout precision-drift" aria-live="polite">{drift}</p>
            <table class="lens distribution" aria-label="Precision run next tokens">
                <caption>{format!("Next tokens ({})", RUN_LABELS[lab.precision.get_untracked().min(2)])}</caption>
                <thead><tr><th>"Token"</th><th>"Log-prob"</th></tr></thead>
                <tbody>
                    {run.top.into_iter().map(|(token, logprob)| view! {
                        <tr><td>{format!("{token:?}")}</td><td>{format!("{logprob:.4}")}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        })
    };
    view! {
        <h3>"Activations in 8 bits"</h3>
        <fieldset class="precision" role="radiogroup" aria-label="Activation precision">
            <legend>"Activation precision"</legend>
            {radios}
        </fieldset>
        {run}
    }
}

fn outliers_svg(lab: LabState) -> Option<String> {
    let r = lab.outliers.get_untracked()?;
    let range = log_range(&r);
    Some(grid_svg(
        "Outlier features: largest |residual| per layer and dimension (log scale)",
        r.magnitudes.len(),
        r.magnitudes.first().map_or(0, Vec::len),
        &layer_labels(&r),
        &[],
        |l, d| Some(colour(r.magnitudes[l][d], range)),
    ))
}

/// One row per layer, one column per dimension.
fn outliers_csv(r: &OutlierResult) -> String {
    export::grid_csv(
        "layer",
        dimension_labels(r),
        r.magnitudes
            .iter()
            .enumerate()
            .map(|(layer, row)| (layer.to_string(), row.clone())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes_are_grouped_and_the_scale_is_logarithmic() {
        assert_eq!(grouped(22552.4), "22,552");
        assert_eq!(grouped(1234567.0), "1,234,567");
        assert_eq!(grouped(0.5), "0.50");
        let r = OutlierResult {
            tokens: vec!["a".into()],
            magnitudes: vec![vec![0.01, 10.0], vec![0.0, 10000.0]],
            outliers: Vec::new(),
            runs: Vec::new(),
            ms: 0.0,
        };
        assert_eq!(log_range(&r), (-3.0, 4.0));
        assert_eq!(colour(10000.0, log_range(&r)), heatmap::viridis(1.0));
        let csv = outliers_csv(&r);
        assert_eq!(
            csv.lines().collect::<Vec<_>>(),
            ["layer,0,1", "0,0.01,10", "1,0,10000"]
        );
    }
}
