//! Prefill of fixed token ids, then greedy decode steps, with candle-transformers' quantized
//! llama on the CPU; prints JSON (min / median / max over the runs) like `glassbox bench --json`.
//!
//! usage: candle-bench MODEL.gguf IDS.json DECODE_TOKENS RUNS   (threads: RAYON_NUM_THREADS)

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde_json::json;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?)
}

fn summary(values: &[f64]) -> serde_json::Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    json!({"min": v[0], "median": v[v.len() / 2], "max": v[v.len() - 1]})
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, ids, decode, runs] = args.as_slice() else {
        return Err("usage: candle-bench MODEL.gguf IDS.json DECODE_TOKENS RUNS".into());
    };
    let ids: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(ids)?)?;
    let (decode, runs): (usize, usize) = (decode.parse()?, runs.parse()?);
    let device = Device::Cpu;
    let (mut prefill, mut decoding, mut load) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        // The model holds its KV cache: a fresh load per run, timed as the load.
        let started = Instant::now();
        let mut file = std::fs::File::open(model)?;
        let content = gguf_file::Content::read(&mut file)?;
        let mut weights = ModelWeights::from_gguf(content, &mut file, &device)?;
        load.push(started.elapsed().as_secs_f64());

        let t0 = Instant::now();
        let input = Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?;
        let mut next = argmax(&weights.forward(&input, 0)?)?;
        prefill.push(ids.len() as f64 / t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        for step in 0..decode {
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            next = argmax(&weights.forward(&input, ids.len() + step)?)?;
        }
        decoding.push(decode as f64 / t1.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        json!({
            "engine": "candle-transformers quantized_llama",
            "threads": candle_core::utils::get_num_threads(),
            "prompt_tokens": ids.len(),
            "decode_tokens": decode,
            "runs": runs,
            "load_seconds": summary(&load),
            "prefill_tok_s": summary(&prefill),
            "decode_tok_s": summary(&decoding),
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
