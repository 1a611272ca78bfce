//! The Vision view: draw a digit (or pick one of the 1,000 test digits, the keyboard's way in)
//! and see what the MNIST ViT and ViR make of it: class probabilities; for the ViT, where the
//! class token attends (per layer and head, or rolled out across layers); for the ViR, each
//! head's decay matrix, where the class token's retention goes, and the three forms of
//! retention side by side: the same output, different costs.

use super::controls::number_input;
use super::export::{grid_svg, ExportBar};
use super::heatmap::viridis;
use super::legend::{ColourMap, Legend};
use super::surface::{self, Surface};
use crate::protocol::{VisionOutput, VisionReport};
use crate::state::{use_app_state, VisionState, VitMap};
use engine::models::vision::center_like_mnist;
use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::HtmlCanvasElement;

const SIDE: usize = 28;
/// Screen pixels per image pixel on the drawing pad and the overlays.
const ZOOM: usize = 10;
const GRID: usize = 7;
const PATCH: usize = 4;

/// Paints a `side × side` picture onto `canvas`, each pixel a `zoom`-wide square.
fn paint(
    canvas: &HtmlCanvasElement,
    side: usize,
    zoom: usize,
    rgb: impl Fn(usize, usize) -> [u8; 3],
) {
    let n = (side * zoom) as f64;
    let colours: Vec<[u8; 3]> = (0..side * side).map(|k| rgb(k % side, k / side)).collect();
    if let Some(surface) = Surface::new(canvas, n, n) {
        surface.put_cells(&colours, (side, side), (zoom, zoom), (0.0, 0.0));
    }
}

/// The colour of pixel (x, y): the digit in grey with `weights` (one per patch, any scale)
/// over it in viridis.
fn overlay_colour<'a>(
    image: &'a [f32],
    weights: &'a [f32],
) -> impl Fn(usize, usize) -> [u8; 3] + 'a {
    let max = weights.iter().copied().fold(0.0f32, f32::max).max(1e-12);
    move |x, y| {
        let grey = image.get(y * SIDE + x).copied().unwrap_or(0.0);
        let w = weights
            .get((y / PATCH) * GRID + x / PATCH)
            .copied()
            .unwrap_or(0.0)
            / max;
        let c = viridis(w.max(0.0).sqrt());
        // 60% heat, 40% ink, so the digit stays readable under the colours.
        let ink = 255.0 * grey;
        c.map(|v| (0.6 * v as f32 + 0.4 * ink).round() as u8)
    }
}

fn draw_overlay(canvas: &HtmlCanvasElement, image: &[f32], weights: &[f32]) {
    paint(canvas, SIDE, ZOOM, overlay_colour(image, weights));
}

fn overlay_svg(title: &str, image: &[f32], weights: &[f32]) -> String {
    let colour = overlay_colour(image, weights);
    grid_svg(title, SIDE, SIDE, &[], &[], |y, x| Some(colour(x, y)))
}

/// D's colour at (column m, row n); `hidden` above the diagonal.
fn decay_colour(gamma: f32, hidden: [u8; 3]) -> impl Fn(usize, usize) -> [u8; 3] {
    move |m, n| {
        if m > n {
            hidden
        } else {
            viridis(gamma.powi((n - m) as i32))
        }
    }
}

/// The figure's data for JSON export.
fn vision_json(vision: VisionState, which: &str) -> Option<serde_json::Value> {
    let report = vision.report.get_untracked()?;
    let out = if which == "vit" {
        &report.vit
    } else {
        &report.vir
    };
    let vir = which == "vir";
    Some(serde_json::json!({
        "model": which,
        "image_source": vision.source.get_untracked(),
        "image": vision.image.get_untracked(),
        "probs": out.probs,
        "class": out.class,
        "class_token_rows_layer_head_patch": out.class_rows,
        "rollout": out.rollout,
        "decays": if vir { report.decays.clone() } else { Vec::new() },
        "forms": if vir { serde_json::json!(report.forms) } else { serde_json::json!(null) },
    }))
}

/// Row and column of patch `p` in words, and its weight.
fn patch_words(p: usize) -> String {
    format!("row {}, column {}", p / GRID + 1, p % GRID + 1)
}

fn strongest(weights: &[f32]) -> Option<(usize, f32)> {
    weights
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
}

/// What the Vision view shows, in words (also the embed's status line).
pub(super) fn vision_status(vision: VisionState) -> String {
    if vision.running.get().is_some() {
        return "Classifying… (the first time also loads both models)".to_string();
    }
    match vision.report.get() {
        Some(r) => format!("{}: computed on {}.", vision.source.get(), r.backend),
        None => "Draw a digit on the pad, or pick a test digit.".to_string(),
    }
}

#[component]
pub fn VisionPanel() -> impl IntoView {
    let vision = use_app_state().vision;
    let status = move || vision_status(vision);
    view! {
        <section class="vision" aria-label="Vision">
            <div class="vision-input">
                <DrawingPad vision=vision />
                <TestDigitPicker vision=vision />
            </div>
            <p class="vision-status" role="status">{status}</p>
            {move || vision.error.get().map(|e| view! { <p class="notice" role="alert">{e}</p> })}
            <Show when=move || vision.report.with(Option::is_some)>
                <div class="vision-results">
                    <Probabilities vision=vision which="ViT" />
                    <Probabilities vision=vision which="ViR" />
                </div>
                <VitInsides vision=vision />
                <VirInsides vision=vision />
                <FormTable vision=vision />
            </Show>
        </section>
    }
}

/// A 280 × 280 pad: the mouse or a finger draws with a soft 28 × 28 brush; letting go
/// classifies the drawing, laid out like MNIST first.
#[component]
fn DrawingPad(vision: VisionState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let drawn = StoredValue::new(vec![0.0f32; SIDE * SIDE]);
    let last = StoredValue::new(None::<(f32, f32)>);
    let redraw = move || {
        if let Some(canvas) = canvas.get_untracked() {
            drawn.with_value(|d| {
                paint(&canvas, SIDE, ZOOM, |x, y| {
                    let v = (255.0 * (1.0 - d[y * SIDE + x])).round() as u8;
                    [v, v, v]
                })
            });
        }
    };
    Effect::new(move |_| {
        if canvas.get().is_some() {
            redraw();
        }
    });
    // A test digit replaces the drawing.
    Effect::new(move |_| {
        let image = vision.image.get();
        if vision.source.with(|s| s.starts_with("Test digit")) {
            drawn.set_value(image);
            redraw();
        }
    });
    let ink_at = move |x: f32, y: f32| {
        drawn.update_value(|d| {
            for py in 0..SIDE {
                for px in 0..SIDE {
                    let dist =
                        ((px as f32 + 0.5 - x).powi(2) + (py as f32 + 0.5 - y).powi(2)).sqrt();
                    let v = (1.5 - dist).clamp(0.0, 1.0);
                    let cell = &mut d[py * SIDE + px];
                    *cell = cell.max(v);
                }
            }
        });
    };
    let stroke_to = move |ev: &web_sys::PointerEvent| {
        let (x, y) = (
            ev.offset_x() as f32 / ZOOM as f32,
            ev.offset_y() as f32 / ZOOM as f32,
        );
        let from = last.get_value().unwrap_or((x, y));
        // Fill the gap between pointer events so fast strokes stay continuous.
        let steps = (((x - from.0).powi(2) + (y - from.1).powi(2)).sqrt() * 4.0)
            .ceil()
            .max(1.0);
        for i in 1..=steps as usize {
            let f = i as f32 / steps;
            ink_at(from.0 + (x - from.0) * f, from.1 + (y - from.1) * f);
        }
        last.set_value(Some((x, y)));
        redraw();
    };
    let finish = move || {
        if last.get_value().is_some() {
            last.set_value(None);
            vision.classify_drawing(drawn.with_value(|d| center_like_mnist(d)));
        }
    };
    let clear = move |_| {
        drawn.set_value(vec![0.0; SIDE * SIDE]);
        redraw();
    };
    view! {
        <figure class="pad">
            <canvas
                node_ref=canvas
                class="drawing-pad"
                width="280"
                height="280"
                aria-label="Drawing pad: draw a digit with the mouse or a finger; the models answer when you let go"
                on:pointerdown=move |ev| {
                    if let Some(target) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
                        let _ = target.set_pointer_capture(ev.pointer_id());
                    }
                    last.set_value(None);
                    stroke_to(&ev);
                }
                on:pointermove=move |ev| {
                    if last.get_value().is_some() {
                        stroke_to(&ev);
                    }
                }
                on:pointerup=move |_| finish()
                on:pointercancel=move |_| finish()
            ></canvas>
            <figcaption>
                <button on:click=clear>"Clear"</button>
            </figcaption>
        </figure>
    }
}

/// The keyboard's way in: a test digit by number.
#[component]
fn TestDigitPicker(vision: VisionState) -> impl IntoView {
    let index = RwSignal::new(0usize);
    view! {
        <div class="test-digit">
            {number_input("Test digit", index, || 999)}
            <button on:click=move |_| vision.show_test_digit(index.get_untracked())>
                "Classify test digit"
            </button>
            <p class="hint">"1,000 digits the models never trained on (labels from MNIST)."</p>
        </div>
    }
}

fn output(report: &VisionReport, which: &str, form: usize) -> (Vec<f32>, usize) {
    match which {
        "ViT" => (report.vit.probs.clone(), report.vit.class),
        _ => report
            .forms
            .get(form)
            .map_or((report.vir.probs.clone(), report.vir.class), |f| {
                (f.probs.clone(), f.class)
            }),
    }
}

#[component]
pub(super) fn Probabilities(vision: VisionState, which: &'static str) -> impl IntoView {
    let answer = move || {
        vision.report.with(|r| {
            r.as_ref()
                .map(|r| output(r, which, vision.form.get()))
                .unwrap_or_default()
        })
    };
    view! {
        <div class="probs">
            <h3>{which}</h3>
            <p class="prediction" data-model=which>
                {move || {
                    let (probs, class) = answer();
                    format!("{which} says {class} ({:.1}%)", 100.0 * probs.get(class).copied().unwrap_or(0.0))
                }}
            </p>
            <ol aria-label=format!("{which} class probabilities") start="0">
                {move || {
                    let (probs, class) = answer();
                    probs
                        .into_iter()
                        .enumerate()
                        .map(|(digit, p)| {
                            view! {
                                <li class:top=digit == class>
                                    <span class="digit">{digit}</span>
                                    <span class="bar" style=format!("width: {:.1}%", 100.0 * p)></span>
                                    <span class="pct">{format!("{:.1}%", 100.0 * p)}</span>
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ol>
        </div>
    }
}

/// The class token's row for the selected layer and head (or the rollout).
fn class_weights(out: &VisionOutput, layer: usize, head: usize, rollout: bool) -> Vec<f32> {
    if rollout {
        return out.rollout.clone();
    }
    out.class_rows
        .get(layer)
        .and_then(|l| l.get(head))
        .cloned()
        .unwrap_or_default()
}

fn dims(vision: VisionState) -> (usize, usize) {
    vision
        .report
        .with(|r| r.as_ref().map_or((1, 1), crate::state::report_dims))
}

#[component]
pub(super) fn VitInsides(vision: VisionState) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let weights = move || {
        let rollout = vision.vit_map.get() == VitMap::Rollout;
        vision.report.with(|r| {
            r.as_ref()
                .map(|r| class_weights(&r.vit, vision.layer.get(), vision.head.get(), rollout))
                .unwrap_or_default()
        })
    };
    Effect::new(move |_| {
        let w = weights();
        if let Some(canvas) = canvas.get() {
            vision.image.with(|image| draw_overlay(&canvas, image, &w));
        }
    });
    let sentence = move || {
        let w = weights();
        let what = match vision.vit_map.get() {
            VitMap::Rollout => "Rolled out over every layer".to_string(),
            VitMap::Head => format!("Layer {} head {}", vision.layer.get(), vision.head.get()),
        };
        strongest(&w).map_or(String::new(), |(p, v)| {
            format!(
                "{what}: the class token attends most to the patch at {} ({v:.2}).",
                patch_words(p)
            )
        })
    };
    let on_map = move |ev| {
        vision.vit_map.set(if event_target_value(&ev) == "rollout" {
            VitMap::Rollout
        } else {
            VitMap::Head
        })
    };
    view! {
        <section class="vision-figure frame" aria-label="ViT attention">
            <h3>"ViT: where the class token looks"</h3>
            <div class="selection">
                {number_input("Layer", vision.layer, move || dims(vision).0 - 1)}
                {number_input("Head", vision.head, move || dims(vision).1 - 1)}
                <label class="field inline">
                    <span>"Show"</span>
                    <select
                        on:change=on_map
                        prop:value=move || match vision.vit_map.get() {
                            VitMap::Rollout => "rollout",
                            VitMap::Head => "head",
                        }
                    >
                        <option value="head">"this head"</option>
                        <option value="rollout">"rollout (all layers)"</option>
                    </select>
                </label>
            </div>
            <canvas node_ref=canvas class="overlay" role="img" aria-label="ViT attention over the digit" aria-describedby="vit-sentence"></canvas>
            <Legend
                map=ColourMap::ViridisSqrt
                caption="the class token's attention to a patch, over the digit (√ scale)"
                low="0"
                high="the largest"
            />
            <p id="vit-sentence" aria-live="polite">{sentence}</p>
            <ExportBar
                figure="ViT attention"
                canvas=canvas
                svg=Callback::new(move |_| {
                    let w = weights();
                    Some(vision.image.with_untracked(|image| overlay_svg("ViT: class-token attention", image, &w)))
                })
                data=Callback::new(move |_| vision_json(vision, "vit"))
            />
        </section>
    }
}

#[component]
pub(super) fn VirInsides(vision: VisionState) -> impl IntoView {
    let overlay = NodeRef::<Canvas>::new();
    let decay = NodeRef::<Canvas>::new();
    let retention = move || {
        vision.report.with(|r| {
            r.as_ref()
                .map(|r| {
                    // Retention scores are signed; the picture shows how much, not which way.
                    class_weights(&r.vir, vision.layer.get(), vision.head.get(), false)
                        .iter()
                        .map(|v| v.abs())
                        .collect::<Vec<f32>>()
                })
                .unwrap_or_default()
        })
    };
    let gamma = move || {
        vision.report.with(|r| {
            r.as_ref()
                .and_then(|r| r.decays.get(vision.head.get()).copied())
                .unwrap_or(0.0)
        })
    };
    Effect::new(move |_| {
        let w = retention();
        if let Some(canvas) = overlay.get() {
            vision.image.with(|image| draw_overlay(&canvas, image, &w));
        }
    });
    Effect::new(move |_| {
        let g = gamma();
        if let Some(canvas) = decay.get() {
            // D[n][m] = γ^(n−m) below the diagonal: how much of token m token n still holds.
            let t = SIDE * SIDE / (PATCH * PATCH) + 1;
            let hidden = surface::palette(&canvas).hidden();
            paint(&canvas, t, 4, decay_colour(g, hidden));
        }
    });
    let sentence = move || {
        let g = gamma();
        let half_life = (0.5f32).ln() / g.ln();
        let strongest = strongest(&retention()).map_or(String::new(), |(p, _)| {
            format!(
                " In layer {}, the class token retains most from the patch at {}.",
                vision.layer.get(),
                patch_words(p)
            )
        });
        format!(
            "Head {}: decay γ = {g:.4}; a token's weight halves every {half_life:.1} tokens.{strongest}",
            vision.head.get()
        )
    };
    view! {
        <section class="vision-figure" aria-label="ViR retention">
            <h3>"ViR: decay and retention"</h3>
            <div class="figures">
                <figure class="frame">
                    <canvas node_ref=decay class="decay" role="img" aria-label="ViR decay matrix" aria-describedby="vir-sentence"></canvas>
                    <figcaption>"Decay matrix D of the selected head (row: token, column: earlier token; the class token is last)"</figcaption>
                    <Legend
                        map=ColourMap::Viridis
                        caption="γ^(n−m): how much of an earlier token is kept; grey: later tokens"
                        low="0"
                        high="1"
                    />
                    <ExportBar
                        figure="ViR decay matrix"
                        canvas=decay
                        svg=Callback::new(move |_| {
                            let t = SIDE * SIDE / (PATCH * PATCH) + 1;
                            let colour = decay_colour(gamma(), surface::Palette::LIGHT.hidden());
                            Some(grid_svg("ViR decay matrix D", t, t, &[], &[], |n, m| Some(colour(m, n))))
                        })
                        data=Callback::new(move |_| vision_json(vision, "vir"))
                    />
                </figure>
                <figure class="frame">
                    <canvas node_ref=overlay class="overlay" role="img" aria-label="ViR retention over the digit" aria-describedby="vir-sentence"></canvas>
                    <figcaption>"|Retention score| of the class token over the patches (selected layer and head)"</figcaption>
                    <Legend
                        map=ColourMap::ViridisSqrt
                        caption="|retention score|, over the digit (√ scale)"
                        low="0"
                        high="the largest"
                    />
                    <ExportBar
                        figure="ViR retention"
                        canvas=overlay
                        svg=Callback::new(move |_| {
                            let w = retention();
                            Some(vision.image.with_untracked(|image| overlay_svg("ViR: class-token retention", image, &w)))
                        })
                        data=Callback::new(move |_| vision_json(vision, "vir"))
                    />
                </figure>
            </div>
            <p id="vir-sentence" aria-live="polite">{sentence}</p>
        </section>
    }
}

#[component]
fn FormTable(vision: VisionState) -> impl IntoView {
    let rows = move || {
        vision
            .report
            .with(|r| r.as_ref().map(|r| r.forms.clone()).unwrap_or_default())
    };
    view! {
        <section class="vision-figure frame" aria-label="Retention forms">
            <h3>"ViR: three forms of retention, one answer"</h3>
            <div class="selection">
                {number_input("Chunk length", vision.chunk, || 50)}
                <button on:click=move |_| vision.classify() disabled=move || vision.running.get().is_some()>
                    "Run again"
                </button>
            </div>
            <table class="forms">
                <thead>
                    <tr>
                        <th scope="col">"Shown"</th>
                        <th scope="col">"Form"</th>
                        <th scope="col">"Class"</th>
                        <th scope="col">"Largest logit difference from parallel"</th>
                        <th scope="col">"Time per image"</th>
                        <th scope="col">"Floats held per layer"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || {
                        rows()
                            .into_iter()
                            .enumerate()
                            .map(|(i, f)| {
                                let name = f.form.clone();
                                view! {
                                    <tr>
                                        <td>
                                            <input
                                                type="radio"
                                                name="vir-form"
                                                aria-label=format!("Show the {name} form's probabilities")
                                                prop:checked=move || vision.form.get() == i
                                                on:change=move |_| vision.form.set(i)
                                            />
                                        </td>
                                        <td>{f.form}</td>
                                        <td>{f.class}</td>
                                        <td>{format!("{:.2e}", f.max_logit_diff)}</td>
                                        <td>{format!("{:.2} ms", f.ms)}</td>
                                        <td>{f.floats_held}</td>
                                    </tr>
                                }
                            })
                            .collect_view()
                    }}
                </tbody>
            </table>
            <p class="hint">
                "Parallel holds every head's T × T score matrix (O(T²)); recurrent one d × d state per head, \
                 whatever the length (O(1) in T); chunkwise a chunk's scores and the state."
            </p>
        </section>
    }
}
