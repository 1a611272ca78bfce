//! MNIST's data: its test digits as the project ships them (`mnist-test.bin`), and a drawing laid
//! out the way MNIST's digits were prepared.

use crate::error::{Error, Result};

/// Lays out a drawn 28 × 28 digit the way MNIST's digits were prepared (LeCun et al.): the ink's
/// bounding box scaled, keeping its aspect, to fit 20 × 20, then moved so its centre of mass
/// is the image's centre. A drawing made anywhere on the pad then looks like the training data.
/// An empty image, or one of another size, comes back unchanged.
pub fn center_like_mnist(image: &[f32]) -> Vec<f32> {
    const SIDE: usize = 28;
    const BOX: f32 = 20.0;
    if image.len() != SIDE * SIDE {
        return image.to_vec();
    }
    let ink = |x: usize, y: usize| image[y * SIDE + x];
    let (mut x0, mut y0, mut x1, mut y1) = (SIDE, SIDE, 0, 0);
    for y in 0..SIDE {
        for x in 0..SIDE {
            if ink(x, y) > 0.0 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if x0 >= x1 {
        return image.to_vec();
    }
    let (w, h) = ((x1 - x0) as f32, (y1 - y0) as f32);
    let scale = BOX / w.max(h);
    let (sw, sh) = (w * scale, h * scale);
    // Scale into a 28 × 28 canvas (top-left at the origin), sampling bilinearly.
    let mut scaled = vec![0.0f32; SIDE * SIDE];
    let sample = |fx: f32, fy: f32| -> f32 {
        let (fx, fy) = (
            fx.clamp(0.0, (SIDE - 1) as f32),
            fy.clamp(0.0, (SIDE - 1) as f32),
        );
        let (ix, iy) = (fx.floor() as usize, fy.floor() as usize);
        let (jx, jy) = ((ix + 1).min(SIDE - 1), (iy + 1).min(SIDE - 1));
        let (ax, ay) = (fx - ix as f32, fy - iy as f32);
        let top = ink(ix, iy) * (1.0 - ax) + ink(jx, iy) * ax;
        let bottom = ink(ix, jy) * (1.0 - ax) + ink(jx, jy) * ax;
        top * (1.0 - ay) + bottom * ay
    };
    for y in 0..(sh.ceil() as usize).min(SIDE) {
        for x in 0..(sw.ceil() as usize).min(SIDE) {
            let fx = x0 as f32 + (x as f32 + 0.5) / scale - 0.5;
            let fy = y0 as f32 + (y as f32 + 0.5) / scale - 0.5;
            scaled[y * SIDE + x] = sample(fx, fy);
        }
    }
    // Shift the centre of mass to the middle.
    let (mut mass, mut mx, mut my) = (0.0f32, 0.0f32, 0.0f32);
    for (i, &v) in scaled.iter().enumerate() {
        mass += v;
        mx += v * (i % SIDE) as f32;
        my += v * (i / SIDE) as f32;
    }
    let (dx, dy) = (
        (13.5 - mx / mass).round() as isize,
        (13.5 - my / mass).round() as isize,
    );
    let mut out = vec![0.0f32; SIDE * SIDE];
    for y in 0..SIDE as isize {
        for x in 0..SIDE as isize {
            let (tx, ty) = (x + dx, y + dy);
            if (0..SIDE as isize).contains(&tx) && (0..SIDE as isize).contains(&ty) {
                out[ty as usize * SIDE + tx as usize] = scaled[y as usize * SIDE + x as usize];
            }
        }
    }
    out
}

/// One labelled digit of `mnist-test.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub label: u8,
    /// `image_size²` values in [0, 1] (`byte / 255`).
    pub pixels: Vec<f32>,
}

/// Parses `mnist-test.bin`: records of `[label u8][784 pixel bytes]` (see `docs/vision.md`).
pub fn read_test_set(bytes: &[u8]) -> Result<Vec<LabelledImage>> {
    const RECORD: usize = 1 + 28 * 28;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::InvalidRequest(format!(
            "a test set is whole records of {RECORD} bytes; this one has {} bytes",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, record)| {
            if record[0] > 9 {
                return Err(Error::InvalidRequest(format!(
                    "test digit {i} has label {}, not 0–9",
                    record[0]
                )));
            }
            Ok(LabelledImage {
                label: record[0],
                pixels: record[1..].iter().map(|&b| b as f32 / 255.0).collect(),
            })
        })
        .collect()
}
