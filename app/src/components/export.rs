//! Exports for teaching material: every figure as PNG (its canvas) and SVG (drawn again from its
//! data, so it scales in slides), its data as JSON (and CSV where it is one table), and a "run card" naming everything needed
//! to make the figure again (model and sha256, input, sampling, seed, engine version, tier,
//! deep link).

use crate::state::AppState;
use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// Saves `url` as a file named `name`, through a temporary link.
pub fn download_url(url: &str, name: &str) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Ok(link) = document.create_element("a") else {
        return;
    };
    let link: web_sys::HtmlAnchorElement = link.unchecked_into();
    link.set_href(url);
    link.set_download(name);
    link.click();
}

/// Saves `text` as a file.
pub fn download_text(name: &str, mime: &str, text: &str) {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options) else {
        return;
    };
    if let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) {
        download_url(&url, name);
        let _ = web_sys::Url::revoke_object_url(&url);
    }
}

fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Cell side in SVG units.
const CELL: usize = 12;

/// A figure's numbers as CSV: a header of `corner` (what the rows are) then `columns` (already
/// quoted where they need it), and one line per row, its name first.
pub fn grid_csv(
    corner: &str,
    columns: impl IntoIterator<Item = String>,
    rows: impl IntoIterator<Item = (String, Vec<f32>)>,
) -> String {
    let mut out = String::from(corner);
    for label in columns {
        out.push(',');
        out.push_str(&label);
    }
    out.push('\n');
    for (name, values) in rows {
        out.push_str(&name);
        for v in values {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    out
}

/// A heatmap as SVG: `colour(row, col)` per cell (None: nothing drawn), with labels along the
/// left and the top when given.
pub fn grid_svg(
    title: &str,
    rows: usize,
    cols: usize,
    row_labels: &[String],
    col_labels: &[String],
    colour: impl Fn(usize, usize) -> Option<[u8; 3]>,
) -> String {
    let margin = if row_labels.is_empty() { 0 } else { 90 };
    let (w, h) = (margin + cols * CELL, margin + rows * CELL);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<title>{}</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
        escape_xml(title)
    );
    let short = |s: &str| escape_xml(&s.chars().take(14).collect::<String>());
    for (i, label) in row_labels.iter().enumerate() {
        out += &format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"9\" font-family=\"sans-serif\" text-anchor=\"end\">{}</text>\n",
            margin - 4,
            margin + i * CELL + CELL - 3,
            short(label)
        );
    }
    for (j, label) in col_labels.iter().enumerate() {
        let (x, y) = (margin + j * CELL + CELL - 3, margin - 4);
        out += &format!(
            "<text x=\"{x}\" y=\"{y}\" font-size=\"9\" font-family=\"sans-serif\" transform=\"rotate(-60 {x} {y})\">{}</text>\n",
            short(label)
        );
    }
    for i in 0..rows {
        for j in 0..cols {
            if let Some(c) = colour(i, j) {
                out += &format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"{CELL}\" height=\"{CELL}\" fill=\"{}\"/>\n",
                    margin + j * CELL,
                    margin + i * CELL,
                    hex(c)
                );
            }
        }
    }
    out + "</svg>\n"
}

/// What is needed to make a figure again.
pub fn run_card(state: AppState, figure: &str) -> serde_json::Value {
    let link = state.current_link();
    let href = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default();
    let base = href.split('?').next().unwrap_or_default().to_string();
    let (engine, settings) = (state.engine, state.chat.settings.get_untracked());
    let vision = state.vision.report.get_untracked();
    let (models, tier) = match link.view {
        crate::deep_link::View::Vision => (
            serde_json::json!(vision.as_ref().map(|r| r.models.clone())),
            vision.map(|r| r.backend).unwrap_or_default(),
        ),
        _ => (
            serde_json::json!(engine.model.get_untracked().map(|m| serde_json::json!({
                "name": m.name,
                "sha256": m.sha256,
            }))),
            engine
                .tier
                .get_untracked()
                .map(|t| t.label())
                .unwrap_or_default(),
        ),
    };
    serde_json::json!({
        "figure": figure,
        "models": models,
        "input": match link.view {
            crate::deep_link::View::Explore => serde_json::json!(state.explorer.source.get_untracked()),
            crate::deep_link::View::Vision => serde_json::json!(state.vision.source.get_untracked()),
            crate::deep_link::View::Lab => serde_json::json!({
                "prompt": link.prompt,
                "ablate": link.ablate,
                "patching": link.patching,
                "dla_target": link.dla_target,
                "precision": link.precision.and_then(|p| crate::deep_link::PRECISIONS.get(p)),
            }),
            _ => serde_json::json!(link.order),
        },
        "selection": { "layer": link.layer, "head": link.head, "token": link.token },
        "sampling": settings.params,
        "seed": settings.params.seed,
        "max_tokens": settings.max_tokens,
        "engine_version": env!("CARGO_PKG_VERSION"),
        "tier": tier,
        "link": format!("{base}{}", link.to_query()),
        "created": js_sys::Date::new_0().to_iso_string().as_string(),
    })
}

/// PNG, SVG, JSON and run-card buttons for one figure.
#[component]
pub fn ExportBar(
    /// "attention matrix", "ViT attention": the group's name and the files' stem.
    figure: &'static str,
    canvas: NodeRef<Canvas>,
    svg: Callback<(), Option<String>>,
    data: Callback<(), Option<serde_json::Value>>,
    /// The data as one CSV table, for figures that are one.
    #[prop(optional)]
    csv: Option<Callback<(), Option<String>>>,
) -> impl IntoView {
    let state = crate::state::use_app_state();
    let stem = figure.replace(' ', "-").to_lowercase();
    let (s1, s2, s3, s5) = (stem.clone(), stem.clone(), stem.clone(), stem.clone());
    let s4 = stem;
    let csv_button = csv.map(|csv| {
        view! {
            <button on:click=move |_| {
                if let Some(text) = csv.run(()) {
                    download_text(&format!("{s5}.csv"), "text/csv", &text);
                }
            }>"Export CSV"</button>
        }
    });
    view! {
        <div class="actions export" role="group" aria-label=format!("Export the {figure}")>
            <button on:click=move |_| {
                if let Some(Ok(url)) = canvas.get_untracked().map(|c| c.to_data_url()) {
                    download_url(&url, &format!("{s1}.png"));
                }
            }>"Export PNG"</button>
            <button on:click=move |_| {
                if let Some(text) = svg.run(()) {
                    download_text(&format!("{s2}.svg"), "image/svg+xml", &text);
                }
            }>"Export SVG"</button>
            <button on:click=move |_| {
                if let Some(value) = data.run(()) {
                    download_text(&format!("{s3}.json"), "application/json", &value.to_string());
                }
            }>"Export JSON"</button>
            {csv_button}
            <button on:click=move |_| {
                let card = run_card(state, figure);
                download_text(&format!("{s4}-run-card.json"), "application/json", &card.to_string());
            }>"Run card"</button>
        </div>
    }
}
