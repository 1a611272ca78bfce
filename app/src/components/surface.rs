//! A canvas made ready for a figure: drawn at the screen's resolution and on the theme's ground.
//!
//! Figures are laid out in CSS pixels; the canvas's backing store is `scale` times larger, a
//! whole number so that a heatmap's cells stay whole pixels (crisp on HiDPI screens and
//! projectors, and a PNG export holds that resolution). The ground and the ink come from the
//! canvas's own computed `background-color` and `color`, so a figure follows the page's light or
//! dark theme; a drawing effect that makes a surface redraws when the theme changes (see
//! [`super::theme::SchemeEpoch`]).

use super::theme::SchemeEpoch;
use leptos::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

/// The colours a figure draws its frame and labels in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Palette {
    pub ground: [u8; 3],
    pub ink: [u8; 3],
}

impl Palette {
    pub const LIGHT: Palette = Palette {
        ground: [255, 255, 255],
        ink: [0, 0, 0],
    };

    /// `ground` moved `f` of the way to `ink`.
    pub fn mix(&self, f: f32) -> [u8; 3] {
        mix(self.ground, self.ink, f)
    }

    /// Cells a mask hides: a quiet grey in either theme.
    pub fn hidden(&self) -> [u8; 3] {
        self.mix(0.16)
    }

    /// Labels that are not the selected one.
    pub fn secondary_ink(&self) -> String {
        css(self.mix(0.72))
    }
}

pub fn mix(a: [u8; 3], b: [u8; 3], f: f32) -> [u8; 3] {
    let f = f.clamp(0.0, 1.0);
    [0, 1, 2].map(|c| (a[c] as f32 * (1.0 - f) + b[c] as f32 * f).round() as u8)
}

pub fn css([r, g, b]: [u8; 3]) -> String {
    format!("rgb({r},{g},{b})")
}

/// "rgb(18, 18, 18)" or "rgba(0, 0, 0, 0)" → RGB; None for a transparent or unknown colour.
pub fn parse_css_colour(text: &str) -> Option<[u8; 3]> {
    let inner = text
        .trim()
        .strip_prefix("rgba(")
        .or_else(|| text.trim().strip_prefix("rgb("))?
        .strip_suffix(')')?;
    let parts: Vec<f32> = inner
        .split([',', ' ', '/'])
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if parts.len() < 3 || parts.get(3).is_some_and(|&alpha| alpha < 0.5) {
        return None;
    }
    Some([0, 1, 2].map(|c| parts[c].clamp(0.0, 255.0).round() as u8))
}

/// The canvas's theme colours, from its computed style (white and black where it has none).
pub fn palette(canvas: &HtmlCanvasElement) -> Palette {
    let style = web_sys::window().and_then(|w| w.get_computed_style(canvas).ok().flatten());
    let read = |property: &str| {
        style
            .as_ref()
            .and_then(|s| s.get_property_value(property).ok())
            .and_then(|v| parse_css_colour(&v))
    };
    Palette {
        ground: read("background-color").unwrap_or(Palette::LIGHT.ground),
        ink: read("color").unwrap_or(Palette::LIGHT.ink),
    }
}

/// Backing-store pixels per CSS pixel: the device's ratio rounded to a whole number, 1 to 3.
pub fn device_scale() -> usize {
    let ratio = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio());
    (ratio.round() as usize).clamp(1, 3)
}

/// A canvas sized `(width, height)` CSS pixels, its ground painted, ready to draw in CSS
/// pixels (the context is scaled).
pub struct Surface {
    pub ctx: CanvasRenderingContext2d,
    pub scale: usize,
    pub palette: Palette,
}

impl Surface {
    pub fn new(canvas: &HtmlCanvasElement, width: f64, height: f64) -> Option<Surface> {
        // Redraw when the theme changes: the effect that draws reads the epoch here.
        if let Some(epoch) = use_context::<SchemeEpoch>() {
            epoch.0.track();
        }
        let scale = device_scale();
        let (w, h) = (width.ceil().max(1.0), height.ceil().max(1.0));
        canvas.set_width((w as usize * scale) as u32);
        canvas.set_height((h as usize * scale) as u32);
        let _ = web_sys::HtmlElement::style(canvas).set_property("width", &format!("{w}px"));
        let _ = canvas.set_attribute("data-scale", &scale.to_string());
        let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
        let palette = palette(canvas);
        let s = scale as f64;
        ctx.set_transform(s, 0.0, 0.0, s, 0.0, 0.0).ok()?;
        ctx.set_fill_style_str(&css(palette.ground));
        ctx.fill_rect(0.0, 0.0, w, h);
        Some(Surface {
            ctx,
            scale,
            palette,
        })
    }

    /// Puts a `(rows, cols)` grid of colours, row-major, each cell `(cell_w, cell_h)` CSS pixels,
    /// with its top left corner at CSS point `(x, y)`; cells are whole device pixels.
    pub fn put_cells(
        &self,
        colours: &[[u8; 3]],
        (rows, cols): (usize, usize),
        (cell_w, cell_h): (usize, usize),
        (x, y): (f64, f64),
    ) -> Option<()> {
        let (cw, ch) = (cell_w * self.scale, cell_h * self.scale);
        let (w, h) = (cols * cw, rows * ch);
        if w == 0 || h == 0 || colours.len() < rows * cols {
            return None;
        }
        let mut pixels = vec![255u8; w * h * 4];
        for (py, line) in pixels.chunks_exact_mut(w * 4).enumerate() {
            let row = &colours[(py / ch) * cols..][..cols];
            for (px, pixel) in line.chunks_exact_mut(4).enumerate() {
                pixel[..3].copy_from_slice(&row[px / cw]);
            }
        }
        let image =
            ImageData::new_with_u8_clamped_array_and_sh(Clamped(&pixels), w as u32, h as u32)
                .ok()?;
        // putImageData ignores the transform: place it in device pixels.
        let s = self.scale as f64;
        self.ctx.put_image_data(&image, x * s, y * s).ok()
    }

    pub fn stroke(&self, colour: [u8; 3]) {
        self.ctx.set_stroke_style_str(&css(colour));
    }
}

/// A pointer's position in the figure's CSS pixels as drawn, wherever the page has scaled the
/// canvas to (a phone's narrow column shrinks it).
pub fn pointer_on(ev: &web_sys::MouseEvent) -> Option<(f64, f64)> {
    let canvas: HtmlCanvasElement = ev.current_target()?.dyn_into().ok()?;
    let scale = canvas
        .get_attribute("data-scale")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    let shown = canvas.get_bounding_client_rect();
    if shown.width() <= 0.0 || shown.height() <= 0.0 {
        return None;
    }
    let drawn = (
        canvas.width() as f64 / scale,
        canvas.height() as f64 / scale,
    );
    Some((
        ev.offset_x() as f64 * drawn.0 / shown.width(),
        ev.offset_y() as f64 * drawn.1 / shown.height(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_colours_parse_and_transparent_ones_do_not() {
        assert_eq!(parse_css_colour("rgb(18, 18, 18)"), Some([18, 18, 18]));
        assert_eq!(parse_css_colour("rgba(255, 255, 255, 1)"), Some([255; 3]));
        assert_eq!(parse_css_colour("rgb(0 128 255 / 1)"), Some([0, 128, 255]));
        assert_eq!(parse_css_colour("rgba(0, 0, 0, 0)"), None);
        assert_eq!(parse_css_colour("canvas"), None);
    }

    #[test]
    fn the_hidden_grey_sits_between_ground_and_ink() {
        let dark = Palette {
            ground: [18, 18, 18],
            ink: [255, 255, 255],
        };
        assert_eq!(Palette::LIGHT.hidden(), [214, 214, 214]);
        let h = dark.hidden();
        assert!(h[0] > 18 && h[0] < 128, "{h:?}");
    }
}
