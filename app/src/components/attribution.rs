//! The Lab's direct logit attribution: the chosen next token's logit split into what each
//! head and each MLP wrote at the last position (and the embedding), as a layers × (heads +
//! MLP) heatmap on a diverging scale, the line "logit = sum of parts", and the largest parts
//! as a list. Clicking a head's cell, or pressing Enter on its line in the list, shows that
//! head's attention above (it ablates nothing).

use super::export::{self, grid_svg, ExportBar};
use super::heatmap::{self, CellGrid};
use super::legend::{ColourMap, Legend};
use super::surface;
use crate::protocol::AttributionResult;
use crate::state::{use_app_state, LabState};
use leptos::html::Canvas;
use leptos::prelude::*;

/// How many of the largest parts the text alternative lists.
const LARGEST: usize = 6;
/// A cell's side in pixels.
const CELL: usize = 16;

/// The colour scale's end: the largest |part| among heads and MLPs.
fn scale(r: &AttributionResult) -> f32 {
    r.heads
        .iter()
        .flatten()
        .chain(&r.mlps)
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6)
}

/// The grid, row-major: per layer its heads, then its MLP.
fn cells(r: &AttributionResult) -> Vec<f32> {
    r.heads
        .iter()
        .zip(&r.mlps)
        .flat_map(|(heads, &mlp)| heads.iter().copied().chain([mlp]))
        .collect()
}

fn layer_labels(r: &AttributionResult) -> Vec<String> {
    (0..r.heads.len()).map(|l| format!("L{l}")).collect()
}

fn column_labels(r: &AttributionResult) -> Vec<String> {
    let heads = r.heads.first().map_or(0, Vec::len);
    (0..heads)
        .map(|h| format!("H{h}"))
        .chain(["MLP".to_string()])
        .collect()
}

/// A part of the logit: a head or a layer's MLP.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Head(usize, usize),
    Mlp(usize),
}

/// The `LARGEST` parts by |share|, largest first.
fn largest(r: &AttributionResult) -> Vec<(Part, f32)> {
    let mut parts: Vec<(Part, f32)> = r
        .heads
        .iter()
        .enumerate()
        .flat_map(|(l, row)| {
            row.iter()
                .enumerate()
                .map(move |(h, &v)| (Part::Head(l, h), v))
        })
        .chain(r.mlps.iter().enumerate().map(|(l, &v)| (Part::Mlp(l), v)))
        .collect();
    parts.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    parts.truncate(LARGEST);
    parts
}

/// "+1.23" / "-0.45" (ASCII signs: the numbers are read back by tests and spreadsheets).
fn signed(v: f32) -> String {
    format!("{v:+.2}")
}

/// "logit 17.52 = sum of parts 17.52 (embedding +0.10, heads +8.00, MLPs +9.42)".
pub(super) fn sum_line(r: &AttributionResult) -> String {
    let heads: f32 = r.heads.iter().flatten().sum();
    let mlps: f32 = r.mlps.iter().sum();
    format!(
        "{:?}: logit {:.2} = sum of parts {:.2} (embedding {}, heads {}, MLPs {})",
        r.target,
        r.logit,
        r.total,
        signed(r.embedding),
        signed(heads),
        signed(mlps)
    )
}

/// What the attribution shows, in words (also the embed's status line).
pub(super) fn attribution_status(lab: LabState) -> String {
    if lab.attributing.get().is_some() {
        return "Splitting the next token's logit into the heads' and MLPs' parts…".to_string();
    }
    match lab.attribution.get() {
        Some(r) => format!(
            "Direct logit attribution of {:?} after {} tokens, in {:.0} ms.",
            r.target,
            r.tokens.len(),
            r.ms
        ),
        None => "Waiting for the model…".to_string(),
    }
}

#[component]
pub fn AttributionPanel() -> impl IntoView {
    let lab = use_app_state().lab;
    view! {
        <h3>"Direct logit attribution"</h3>
        <p class="hint">
            "The next token's logit is a sum: what the embedding, every head and every MLP wrote "
            "into the residual stream at the last token, read through the final norm and the "
            "unembedding. Red parts push the token up, blue parts push it down."
        </p>
        <p class="explorer-status attribution-status" aria-live="polite">{move || attribution_status(lab)}</p>
        {move || lab.attribution_error.get().map(|e| view! {
            <p class="notice" role="alert">{format!("No attribution for this model: {e}")}</p>
        })}
        <AttributionFigure lab=lab />
    }
}

/// The target's picker: the "before" distribution's tokens (the most likely by default).
#[component]
fn TargetPicker(lab: LabState) -> impl IntoView {
    let state = use_app_state();
    let chosen = move || {
        lab.dla_target
            .get()
            .or_else(|| lab.attribution.with(|r| r.as_ref().map(|r| r.target_id)))
            .map(|id| id.to_string())
            .unwrap_or_default()
    };
    let options = move || {
        lab.ablation.get().map(|r| {
            r.before
                .into_iter()
                .map(|t| {
                    let label = format!("{:?} ({:.1}%)", t.token, 100.0 * t.probability);
                    view! { <option value=t.id.to_string()>{label}</option> }
                })
                .collect_view()
        })
    };
    view! {
        <label class="field inline">
            <span>"Target token"</span>
            <select
                prop:value=chosen
                disabled=move || !state.can_ablate()
                on:change=move |ev| {
                    if let Ok(id) = event_target_value(&ev).parse::<u32>() {
                        lab.dla_target.set(Some(id));
                        state.run_attribution();
                    }
                }
            >
                {options}
            </select>
        </label>
    }
}

#[component]
pub(super) fn AttributionFigure(lab: LabState) -> impl IntoView {
    let state = use_app_state();
    let canvas = NodeRef::<Canvas>::new();
    let geometry = StoredValue::new(None::<CellGrid>);
    Effect::new(move |_| {
        let (Some(canvas), Some(r)) = (canvas.get(), lab.attribution.get()) else {
            return;
        };
        let end = scale(&r);
        let ground = surface::palette(&canvas).ground;
        let colours: Vec<[u8; 3]> = cells(&r)
            .iter()
            .map(|&v| heatmap::diverging_on(v / end, ground))
            .collect();
        let grid = heatmap::draw_colour_grid(
            &canvas,
            &colours,
            &layer_labels(&r),
            &column_labels(&r),
            (CELL, CELL),
        );
        geometry.set_value(grid);
    });
    let on_click = move |ev: web_sys::MouseEvent| {
        let cell = geometry.with_value(|g| {
            g.zip(surface::pointer_on(&ev))
                .and_then(|(g, (x, y))| g.cell_at(x, y))
        });
        let heads = lab.attribution.with_untracked(|r| {
            r.as_ref()
                .map_or(0, |r| r.heads.first().map_or(0, Vec::len))
        });
        if let Some((layer, head)) = cell.filter(|&(_, col)| col < heads) {
            state.show_head(layer, head);
        }
    };
    let parts = move || {
        let r = lab.attribution.get()?;
        Some(
            largest(&r)
                .into_iter()
                .map(|(part, v)| match part {
                    Part::Head(layer, head) => view! {
                        <li>
                            <button
                                type="button"
                                class="link"
                                on:click=move |_| state.show_head(layer, head)
                            >
                                {format!("Layer {layer} head {head}: {}", signed(v))}
                            </button>
                        </li>
                    }
                    .into_any(),
                    Part::Mlp(layer) => {
                        view! { <li>{format!("Layer {layer} MLP: {}", signed(v))}</li> }.into_any()
                    }
                })
                .collect_view(),
        )
    };
    view! {
        <TargetPicker lab=lab />
        <Show when=move || lab.attribution.with(Option::is_some)>
            <div class="frame">
            <p class="readout attribution-sum" aria-live="polite">
                {move || lab.attribution.get().map(|r| sum_line(&r))}
            </p>
            <p class="hint">
                "Rows: layers (0 at the top); columns: heads, then the layer's MLP. Colour: the "
                "part of the logit, the ground's colour at 0, saturated at the largest part. Click a head to "
                "show its attention above."
            </p>
            <canvas
                node_ref=canvas
                class="matrix"
                role="img"
                aria-label="Logit attribution heatmap"
                aria-describedby="attribution-description"
                on:click=on_click
            ></canvas>
            <Legend
                map=ColourMap::Diverging
                caption="a part of the target's logit"
                low=Signal::derive(move || lab.attribution.with(|r| r.as_ref().map_or(String::new(), |r| format!("{:+.2}", -scale(r)))))
                high=Signal::derive(move || lab.attribution.with(|r| r.as_ref().map_or(String::new(), |r| format!("{:+.2}", scale(r)))))
            />
            <div id="attribution-description" class="readout">
                <p>"The largest parts (a head's line shows its attention):"</p>
                <ol>{parts}</ol>
            </div>
            <ExportBar
                figure="logit attribution"
                canvas=canvas
                svg=Callback::new(move |_| attribution_svg(lab))
                data=Callback::new(move |_| {
                    lab.attribution.get_untracked().map(|r| serde_json::to_value(&r).unwrap_or_default())
                })
                csv=Callback::new(move |_| lab.attribution.get_untracked().map(|r| attribution_csv(&r)))
            />
            </div>
        </Show>
    }
}

fn attribution_svg(lab: LabState) -> Option<String> {
    let r = lab.attribution.get_untracked()?;
    let title = format!("Direct logit attribution of {:?}", r.target);
    let (end, values, cols) = (scale(&r), cells(&r), column_labels(&r));
    Some(grid_svg(
        &title,
        r.heads.len(),
        cols.len(),
        &layer_labels(&r),
        &cols,
        |l, c| Some(heatmap::diverging(values[l * cols.len() + c] / end)),
    ))
}

/// One row per layer: its heads' parts, then its MLP's; the embedding's part is a row of its
/// own (layer "embedding", in the first column).
fn attribution_csv(r: &AttributionResult) -> String {
    let embedding = ("embedding".to_string(), vec![r.embedding]);
    let blocks = r
        .heads
        .iter()
        .zip(&r.mlps)
        .enumerate()
        .map(|(layer, (heads, &mlp))| {
            let mut row = heads.clone();
            row.push(mlp);
            (layer.to_string(), row)
        });
    export::grid_csv(
        "layer",
        column_labels(r),
        std::iter::once(embedding).chain(blocks),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribution() -> AttributionResult {
        AttributionResult {
            tokens: vec!["A".into(), " b".into()],
            target_id: 5,
            target: " c".into(),
            logit: 3.0,
            total: 3.0,
            embedding: 0.5,
            heads: vec![vec![1.0, -2.0], vec![0.25, 0.0]],
            mlps: vec![3.0, 0.25],
            ms: 1.0,
        }
    }

    #[test]
    fn parts_are_listed_largest_first_and_summed_in_words() {
        let r = attribution();
        assert_eq!(largest(&r)[0], (Part::Mlp(0), 3.0));
        assert_eq!(largest(&r)[1], (Part::Head(0, 1), -2.0));
        assert_eq!(cells(&r), vec![1.0, -2.0, 3.0, 0.25, 0.0, 0.25]);
        assert_eq!(
            sum_line(&r),
            "\" c\": logit 3.00 = sum of parts 3.00 (embedding +0.50, heads -0.75, MLPs +3.25)"
        );
    }

    #[test]
    fn the_csv_has_the_embedding_and_a_row_per_layer() {
        let csv = attribution_csv(&attribution());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "layer,H0,H1,MLP");
        assert_eq!(lines[1], "embedding,0.5");
        assert_eq!(lines[2], "0,1,-2,3");
        assert_eq!(lines[3], "1,0.25,0,0.25");
    }
}
