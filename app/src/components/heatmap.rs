//! Drawing the explorer's pictures on `<canvas>`: attention matrices with token labels, the
//! head view's lines, the model view's grid of thumbnails, and the Lab's grids of values.
//!
//! Colours come from viridis, which colour-blind readers can tell apart and which prints in
//! grey as a ramp. Weights are drawn as √weight: attention is mostly tiny weights and a few big
//! ones, and a linear scale would show only the big ones. Hidden (masked) cells are grey.

use super::surface::{css, Surface};
use web_sys::HtmlCanvasElement;

/// Viridis at nine evenly spaced points (matplotlib's table).
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];
const LABEL_FONT_PX: f64 = 11.0;
/// Room for the row labels on the left and the column labels on top.
pub const LABEL_MARGIN: f64 = 96.0;
/// The matrix's side in CSS pixels, at most (cells are whole pixels).
const MATRIX_PIXELS: usize = 640;

/// `value` in [0, 1] → RGB.
pub fn viridis(value: f32) -> [u8; 3] {
    let x = value.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let mix = |c: usize| (VIRIDIS[i][c] * (1.0 - f) + VIRIDIS[i + 1][c] * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// The colour of an attention weight (√ scale).
fn weight_colour(weight: f32) -> [u8; 3] {
    viridis(weight.max(0.0).sqrt())
}

/// Where a matrix lies on its canvas, for turning a pointer position into a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixGeometry {
    pub cell: usize,
    pub tokens: usize,
}

impl MatrixGeometry {
    pub fn for_tokens(tokens: usize) -> Self {
        MatrixGeometry {
            cell: (MATRIX_PIXELS / tokens.max(1)).clamp(1, 24),
            tokens,
        }
    }

    /// The (row, column) under canvas point (x, y).
    pub fn cell_at(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let (x, y) = (x - LABEL_MARGIN, y - LABEL_MARGIN);
        if x < 0.0 || y < 0.0 {
            return None;
        }
        let (row, col) = (y as usize / self.cell, x as usize / self.cell);
        (row < self.tokens && col < self.tokens).then_some((row, col))
    }

    fn side(&self) -> usize {
        self.cell * self.tokens
    }
}

/// Draws a `(t, t)` matrix of weights with token labels, the `selected` row outlined.
pub fn draw_matrix(
    canvas: &HtmlCanvasElement,
    values: &[f32],
    visible: &[bool],
    labels: &[String],
    selected: usize,
) -> Option<MatrixGeometry> {
    let t = labels.len();
    if t == 0 || values.len() != t * t {
        return None;
    }
    let g = MatrixGeometry::for_tokens(t);
    let side = g.side();
    let total = side as f64 + LABEL_MARGIN;
    let surface = Surface::new(canvas, total, total)?;
    let hidden = surface.palette.hidden();
    let colours: Vec<[u8; 3]> = (0..t * t)
        .map(|k| {
            if visible.get(k).copied().unwrap_or(true) {
                weight_colour(values[k])
            } else {
                hidden
            }
        })
        .collect();
    surface.put_cells(
        &colours,
        (t, t),
        (g.cell, g.cell),
        (LABEL_MARGIN, LABEL_MARGIN),
    )?;

    // The selected row, outlined in ink and ground so it shows on any colour.
    let ctx = &surface.ctx;
    let y = LABEL_MARGIN + (selected * g.cell) as f64;
    ctx.set_line_width(1.0);
    surface.stroke(surface.palette.ink);
    ctx.stroke_rect(
        LABEL_MARGIN - 0.5,
        y - 0.5,
        side as f64 + 1.0,
        g.cell as f64 + 1.0,
    );
    surface.stroke(surface.palette.ground);
    ctx.stroke_rect(
        LABEL_MARGIN - 1.5,
        y - 1.5,
        side as f64 + 3.0,
        g.cell as f64 + 3.0,
    );

    draw_axis_labels(&surface, labels, g.cell, selected);
    Some(g)
}

/// Row labels on the left, column labels rotated on top; every k-th one where cells are too
/// small to hold them all, and always the selected one.
fn draw_axis_labels(surface: &Surface, labels: &[String], cell: usize, selected: usize) {
    let ctx = &surface.ctx;
    let (ink, secondary) = (css(surface.palette.ink), surface.palette.secondary_ink());
    let every = (LABEL_FONT_PX / cell as f64).ceil().max(1.0) as usize;
    ctx.set_text_baseline("middle");
    for (i, label) in labels.iter().enumerate() {
        let is_selected = i == selected;
        if i % every != 0 && !is_selected {
            continue;
        }
        let text = shorten(label);
        ctx.set_font(if is_selected {
            "bold 11px sans-serif"
        } else {
            "11px sans-serif"
        });
        ctx.set_fill_style_str(if is_selected { &ink } else { &secondary });
        let middle = LABEL_MARGIN + (i * cell) as f64 + cell as f64 / 2.0;
        ctx.set_text_align("right");
        let _ = ctx.fill_text(&text, LABEL_MARGIN - 4.0, middle);
        ctx.save();
        let _ = ctx.translate(middle, LABEL_MARGIN - 4.0);
        let _ = ctx.rotate(-std::f64::consts::FRAC_PI_2);
        ctx.set_text_align("left");
        let _ = ctx.fill_text(&text, 0.0, 0.0);
        ctx.restore();
    }
}

/// A label that fits the margin.
fn shorten(label: &str) -> String {
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= 12 {
        label.to_string()
    } else {
        chars[..11].iter().collect::<String>() + "…"
    }
}

/// The side of a grid's cells: as large as fits the figure, 2 to 24 pixels.
pub fn cell_side(rows: usize, cols: usize) -> usize {
    (MATRIX_PIXELS / rows.max(cols).max(1)).clamp(2, 24)
}

/// The diverging scale's ends: ColorBrewer RdBu's, which colour-blind readers tell apart.
pub const DIVERGING_NEGATIVE: [u8; 3] = [33, 102, 172];
pub const DIVERGING_POSITIVE: [u8; 3] = [178, 24, 43];

/// A signed value in [-1, 1] → blue (negative), white (0), red (positive): a diverging scale
/// for parts that add to a total, on a white ground (the SVG exports).
pub fn diverging(value: f32) -> [u8; 3] {
    diverging_on(value, [255, 255, 255])
}

/// The diverging scale with zero at `ground`, the figure's background: in the dark theme zero
/// recedes into the page as it does in the light one.
pub fn diverging_on(value: f32, ground: [u8; 3]) -> [u8; 3] {
    let v = value.clamp(-1.0, 1.0);
    let end = if v < 0.0 {
        DIVERGING_NEGATIVE
    } else {
        DIVERGING_POSITIVE
    };
    super::surface::mix(ground, end, v.abs())
}

/// Where a grid of `(cell_w, cell_h)` cells lies on its canvas (after the label margins).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellGrid {
    pub rows: usize,
    pub cols: usize,
    pub cell: (usize, usize),
}

impl CellGrid {
    /// The (row, column) under canvas point (x, y).
    pub fn cell_at(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let (x, y) = (x - LABEL_MARGIN, y - LABEL_MARGIN);
        if x < 0.0 || y < 0.0 {
            return None;
        }
        let (row, col) = (y as usize / self.cell.1, x as usize / self.cell.0);
        (row < self.rows && col < self.cols).then_some((row, col))
    }
}

/// A `(rows, cols)` grid of colours, row-major, each cell `(width, height)` pixels, row labels
/// on the left and column labels on top (as many as fit: labels narrower than the cells are
/// thinned out).
pub fn draw_colour_grid(
    canvas: &HtmlCanvasElement,
    colours: &[[u8; 3]],
    row_labels: &[String],
    col_labels: &[String],
    (cell_w, cell_h): (usize, usize),
) -> Option<CellGrid> {
    let (rows, cols) = (row_labels.len(), col_labels.len());
    if rows == 0 || cols == 0 || colours.len() != rows * cols || cell_w == 0 || cell_h == 0 {
        return None;
    }
    let (w, h) = (cols * cell_w, rows * cell_h);
    let surface = Surface::new(canvas, w as f64 + LABEL_MARGIN, h as f64 + LABEL_MARGIN)?;
    surface.put_cells(
        colours,
        (rows, cols),
        (cell_w, cell_h),
        (LABEL_MARGIN, LABEL_MARGIN),
    )?;
    let ctx = &surface.ctx;
    let every = |cell: usize| (LABEL_FONT_PX / cell as f64).ceil().max(1.0) as usize;
    ctx.set_text_baseline("middle");
    ctx.set_font("11px sans-serif");
    ctx.set_fill_style_str(&surface.palette.secondary_ink());
    ctx.set_text_align("right");
    for (i, label) in row_labels.iter().enumerate().step_by(every(cell_h)) {
        let middle = LABEL_MARGIN + (i * cell_h) as f64 + cell_h as f64 / 2.0;
        let _ = ctx.fill_text(&shorten(label), LABEL_MARGIN - 4.0, middle);
    }
    ctx.set_text_align("left");
    for (j, label) in col_labels.iter().enumerate().step_by(every(cell_w)) {
        let middle = LABEL_MARGIN + (j * cell_w) as f64 + cell_w as f64 / 2.0;
        ctx.save();
        let _ = ctx.translate(middle, LABEL_MARGIN - 4.0);
        let _ = ctx.rotate(-std::f64::consts::FRAC_PI_2);
        let _ = ctx.fill_text(&shorten(label), 0.0, 0.0);
        ctx.restore();
    }
    Some(CellGrid {
        rows,
        cols,
        cell: (cell_w, cell_h),
    })
}

/// The head view (BertViz style): tokens in two columns, a line from the selected token on the
/// left to every token it attends to on the right, as opaque as the weight is large.
pub fn draw_head_view(canvas: &HtmlCanvasElement, row: &[f32], labels: &[String], selected: usize) {
    let t = labels.len();
    let spacing = (720.0 / t.max(1) as f64).clamp(3.0, 16.0);
    let height = spacing * t as f64 + 16.0;
    let width = 420.0;
    let Some(surface) = Surface::new(canvas, width, height) else {
        return;
    };
    let ctx = &surface.ctx;
    let (ink, secondary) = (css(surface.palette.ink), surface.palette.secondary_ink());
    let y = |i: usize| 8.0 + spacing * (i as f64 + 0.5);
    let (left, right) = (140.0, width - 140.0);
    for (j, &weight) in row.iter().enumerate().take(t) {
        if weight < 0.005 {
            continue;
        }
        let [r, g, b] = weight_colour(weight);
        ctx.set_stroke_style_str(&format!("rgba({r},{g},{b},{:.3})", weight.sqrt().max(0.15)));
        ctx.set_line_width(1.0 + 3.0 * weight as f64);
        ctx.begin_path();
        ctx.move_to(left, y(selected));
        ctx.line_to(right, y(j));
        ctx.stroke();
    }
    let every = (LABEL_FONT_PX / spacing).ceil().max(1.0) as usize;
    ctx.set_text_baseline("middle");
    for (i, label) in labels.iter().enumerate() {
        let strong = row.get(i).copied().unwrap_or(0.0) >= 0.05;
        if i % every != 0 && i != selected && !strong {
            continue;
        }
        let text = shorten(label);
        ctx.set_font("11px sans-serif");
        ctx.set_fill_style_str(&secondary);
        if i == selected {
            ctx.set_font("bold 11px sans-serif");
            ctx.set_fill_style_str(&ink);
        }
        ctx.set_text_align("right");
        let _ = ctx.fill_text(&text, left - 6.0, y(i));
        ctx.set_font(if strong {
            "bold 11px sans-serif"
        } else {
            "11px sans-serif"
        });
        ctx.set_fill_style_str(if strong { &ink } else { &secondary });
        ctx.set_text_align("left");
        let _ = ctx.fill_text(&text, right + 6.0, y(i));
    }
}

/// Grid geometry of the model view: one thumbnail per (layer, head), layers down, heads across.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridGeometry {
    pub layers: usize,
    pub heads: usize,
    pub pitch: f64,
}

const GRID_LABEL: f64 = 28.0;
/// The mark of a local (sliding-window) layer in the model view.
pub const LOCAL_LAYER_COLOUR: &str = "#e08a00";

impl GridGeometry {
    pub fn cell_at(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let (x, y) = (x - GRID_LABEL, y - GRID_LABEL);
        if x < 0.0 || y < 0.0 {
            return None;
        }
        let (layer, head) = ((y / self.pitch) as usize, (x / self.pitch) as usize);
        (layer < self.layers && head < self.heads).then_some((layer, head))
    }
}

/// The model view: `(layers, heads, side, side)` thumbnails (bytes, √ scale), each drawn at
/// twice its size, the selected one framed.
pub fn draw_grid(
    canvas: &HtmlCanvasElement,
    thumbnails: &[u8],
    layers: usize,
    heads: usize,
    side: usize,
    selected: (usize, usize),
    local: &[bool],
) -> Option<GridGeometry> {
    let scale = 2;
    let pitch = (side * scale + 4) as f64;
    let width = GRID_LABEL + pitch * heads as f64;
    let height = GRID_LABEL + pitch * layers as f64;
    let surface = Surface::new(canvas, width, height)?;
    let ctx = &surface.ctx;
    let px = side * scale;
    for layer in 0..layers {
        for head in 0..heads {
            let picture = thumbnails.get((layer * heads + head) * side * side..)?;
            // Thumbnails are already √weight: colour them directly.
            let colours: Vec<[u8; 3]> = picture[..side * side]
                .iter()
                .map(|&v| viridis(v as f32 / 255.0))
                .collect();
            let (x, y) = (
                GRID_LABEL + pitch * head as f64,
                GRID_LABEL + pitch * layer as f64,
            );
            surface.put_cells(&colours, (side, side), (scale, scale), (x, y))?;
            if head == 0 && local.get(layer).copied().unwrap_or(false) {
                // A local (sliding-window) layer: an orange bar at the row's left edge.
                ctx.set_fill_style_str(LOCAL_LAYER_COLOUR);
                ctx.fill_rect(1.0, y, 4.0, px as f64);
            }
            if (layer, head) == selected {
                ctx.set_line_width(2.0);
                surface.stroke(surface.palette.ink);
                ctx.stroke_rect(x - 1.5, y - 1.5, px as f64 + 3.0, px as f64 + 3.0);
            }
        }
    }
    ctx.set_font("10px sans-serif");
    ctx.set_fill_style_str(&surface.palette.secondary_ink());
    ctx.set_text_baseline("middle");
    ctx.set_text_align("right");
    for layer in (0..layers).step_by(5) {
        let _ = ctx.fill_text(
            &layer.to_string(),
            GRID_LABEL - 4.0,
            GRID_LABEL + pitch * layer as f64 + px as f64 / 2.0,
        );
    }
    ctx.set_text_align("center");
    for head in 0..heads {
        let _ = ctx.fill_text(
            &head.to_string(),
            GRID_LABEL + pitch * head as f64 + px as f64 / 2.0,
            GRID_LABEL / 2.0,
        );
    }
    Some(GridGeometry {
        layers,
        heads,
        pitch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_runs_from_dark_purple_to_yellow() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(2.0), viridis(1.0));
        // Lightness rises along the scale, so it reads in grey too.
        let luma = |[r, g, b]: [u8; 3]| 0.3 * r as f32 + 0.59 * g as f32 + 0.11 * b as f32;
        let steps: Vec<f32> = (0..=10).map(|i| luma(viridis(i as f32 / 10.0))).collect();
        assert!(steps.windows(2).all(|w| w[1] > w[0]), "{steps:?}");
    }

    #[test]
    fn the_diverging_scale_is_white_at_zero_and_saturates() {
        assert_eq!(diverging(0.0), [255, 255, 255]);
        assert_eq!(diverging(1.0), [178, 24, 43]);
        assert_eq!(diverging(-3.0), [33, 102, 172]);
        let g = CellGrid {
            rows: 2,
            cols: 3,
            cell: (10, 20),
        };
        assert_eq!(
            g.cell_at(LABEL_MARGIN + 25.0, LABEL_MARGIN + 21.0),
            Some((1, 2))
        );
        assert_eq!(g.cell_at(LABEL_MARGIN + 31.0, LABEL_MARGIN), None);
    }

    #[test]
    fn pointer_positions_map_to_cells() {
        let g = MatrixGeometry::for_tokens(10);
        assert_eq!(g.cell, 24);
        assert_eq!(
            g.cell_at(LABEL_MARGIN + 1.0, LABEL_MARGIN + 25.0),
            Some((1, 0))
        );
        assert_eq!(g.cell_at(LABEL_MARGIN - 1.0, LABEL_MARGIN), None);
        assert_eq!(g.cell_at(LABEL_MARGIN + 240.0, LABEL_MARGIN), None);
    }
}
