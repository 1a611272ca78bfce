//! `glassbox classify` and `glassbox eval-vision`: the MNIST ViT and ViR on the command line.

use crate::commands::webgpu_backend;
use crate::BackendChoice;
use engine::backend::RetentionForm;
use engine::models::vision::{read_test_set, LabelledImage};
use engine::runtime::{Device, VisionEngine};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormChoice {
    Parallel,
    Recurrent,
    Chunkwise,
}

#[derive(clap::Args, Clone)]
pub struct VisionArgs {
    /// A vision GGUF: www/models/vit-mnist.gguf or www/models/vir-mnist.gguf.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
    /// How the ViR computes retention (all three give the same output; ignored by the ViT).
    #[arg(long, value_enum, default_value = "parallel")]
    pub form: FormChoice,
    /// Chunk length for `--form chunkwise`.
    #[arg(long, default_value_t = 16)]
    pub chunk: usize,
}

impl VisionArgs {
    fn form(&self) -> RetentionForm {
        match self.form {
            FormChoice::Parallel => RetentionForm::Parallel,
            FormChoice::Recurrent => RetentionForm::Recurrent,
            FormChoice::Chunkwise => RetentionForm::Chunkwise(self.chunk.max(1)),
        }
    }
}

/// The model `--model` names on the device `--backend` names.
fn load(args: &VisionArgs) -> Result<VisionEngine, String> {
    let device = match args.backend {
        BackendChoice::Cpu => Device::Cpu,
        BackendChoice::Webgpu => Device::WebGpu(webgpu_backend()?),
    };
    VisionEngine::load_file(device, &args.model)
        .map_err(|e| format!("{}: {e}", args.model.display()))
}

/// Reads an image: a JSON array of 784 values in [0, 1], or a 28 × 28 PNG (grey, RGB or RGBA;
/// white digit on black, as MNIST).
pub fn read_image(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.starts_with(b"\x89PNG") {
        return decode_png(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let values: Vec<f32> = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{}: neither a PNG nor a JSON array of numbers: {e}",
            path.display()
        )
    })?;
    if let Some(bad) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(format!(
            "{}: pixel value {bad} is outside [0, 1]",
            path.display()
        ));
    }
    Ok(values)
}

fn decode_png(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    // The header's size is checked before any buffer is sized from it.
    let (width, height) = (reader.info().width, reader.info().height);
    if (width, height) != (28, 28) {
        return Err(format!(
            "the PNG is {width}×{height}; the models read 28×28 images"
        ));
    }
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(|e| e.to_string())?;
    let channels = frame.color_type.samples();
    let pixels = &buffer[..frame.buffer_size()];
    Ok(pixels
        .chunks_exact(channels)
        .map(|p| {
            let grey = match channels {
                1 | 2 => p[0] as f32,
                _ => 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32,
            };
            // Transparent pixels are background.
            let alpha = if channels == 2 || channels == 4 {
                p[channels - 1] as f32 / 255.0
            } else {
                1.0
            };
            grey / 255.0 * alpha
        })
        .collect())
}

pub fn classify(args: &VisionArgs, image: &Path, json: bool) -> Result<(), String> {
    let image = read_image(image)?;
    let model = load(args)?;
    let result = pollster::block_on(model.classify(&image, args.form(), false))
        .map_err(|e| e.to_string())?;
    if json {
        let out = serde_json::json!({ "probs": result.probs, "class": result.top() });
        println!("{out}");
    } else {
        for (class, p) in result.probs.iter().enumerate() {
            println!("{class}: {p:.4}");
        }
        println!("class {}", result.top());
    }
    Ok(())
}

/// Accuracy of a shipped model on the shipped test split; with `report`, records it (and every
/// prediction) in that JSON file under the model's architecture, for the tests and the page.
pub fn eval(args: &VisionArgs, test_set: &Path, report: Option<&Path>) -> Result<(), String> {
    let bytes = std::fs::read(test_set).map_err(|e| format!("{}: {e}", test_set.display()))?;
    let digits = read_test_set(&bytes).map_err(|e| format!("{}: {e}", test_set.display()))?;
    let (arch, predictions, seconds) = eval_on(&load(args)?, args, &digits)?;
    let correct = predictions
        .iter()
        .zip(&digits)
        .filter(|(&p, d)| p == d.label as usize)
        .count();
    let model_bytes = std::fs::read(&args.model).map_err(|e| e.to_string())?;
    let sha256: String = Sha256::digest(&model_bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let summary = serde_json::json!({
        "model": arch,
        "file": args.model.file_name().map(|n| n.to_string_lossy().to_string()),
        "sha256": sha256,
        "backend": format!("{:?}", args.backend).to_lowercase(),
        "form": format!("{:?}", args.form()),
        "correct": correct,
        "total": digits.len(),
        "accuracy": correct as f64 / digits.len() as f64,
        "ms_per_image": seconds * 1e3 / digits.len() as f64,
    });
    println!("{summary}");
    if let Some(path) = report {
        let mut all: serde_json::Map<String, serde_json::Value> = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut entry = summary.clone();
        entry["predictions"] = serde_json::json!(predictions);
        if let Some(map) = entry.as_object_mut() {
            map.remove("ms_per_image"); // a timing does not belong in a committed file
        }
        all.insert(arch.to_string(), entry);
        let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn eval_on(
    model: &VisionEngine,
    args: &VisionArgs,
    digits: &[LabelledImage],
) -> Result<(&'static str, Vec<usize>, f64), String> {
    let start = Instant::now();
    let mut predictions = Vec::with_capacity(digits.len());
    for digit in digits {
        let result = pollster::block_on(model.classify(&digit.pixels, args.form(), false))
            .map_err(|e| e.to_string())?;
        predictions.push(result.top());
    }
    Ok((
        model.config().arch.name(),
        predictions,
        start.elapsed().as_secs_f64(),
    ))
}
