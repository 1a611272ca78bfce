//! `glassbox bench`: prefill and decode speed, load time and peak memory. A benchmark that
//! prints numbers, never a test: timings on a shared 2-core machine are noisy, so it reports
//! min / median / max over several runs.

use crate::commands::{configure_threads, load, model_name, with_backend};
use crate::{BackendChoice, RunArgs};
use engine::backend::Backend;
use engine::cpu::CpuBackend;
use engine::language_model::Session;
use engine::models::llama::Taps;
use engine::sampling::argmax;
use serde_json::json;
use std::time::Instant;

/// A fixed English text, long enough for a ≥ 400-token prompt.
pub const BENCH_TEXT: &str = include_str!("bench_prompt.txt");

pub fn run(
    run: &RunArgs,
    prompt_tokens: usize,
    decode_tokens: usize,
    runs: usize,
    json_out: bool,
) -> Result<(), String> {
    with_backend!(run, |backend| {
        let started = Instant::now();
        let model = load(&backend, &run.model)?;
        let load_seconds = started.elapsed().as_secs_f64();
        let mut ids = model
            .tokenizer
            .encode(BENCH_TEXT)
            .map_err(|e| e.to_string())?;
        if ids.len() < prompt_tokens {
            return Err(format!("the bench text has only {} tokens", ids.len()));
        }
        ids.truncate(prompt_tokens);
        let mut prefill = Vec::new();
        let mut decode = Vec::new();
        for _ in 0..runs.max(1) {
            let mut session = Session::new(&model, &backend, prompt_tokens + decode_tokens + 1)
                .map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            let out = pollster::block_on(session.feed(&model, &backend, &ids, Taps::default()))
                .map_err(|e| e.to_string())?;
            prefill.push(prompt_tokens as f64 / t0.elapsed().as_secs_f64());
            let mut next = argmax(&out.logits);
            let t1 = Instant::now();
            for _ in 0..decode_tokens {
                let out =
                    pollster::block_on(session.feed(&model, &backend, &[next], Taps::default()))
                        .map_err(|e| e.to_string())?;
                next = argmax(&out.logits);
            }
            decode.push(decode_tokens as f64 / t1.elapsed().as_secs_f64());
        }
        let threads = engine::cpu::pool::global().threads();
        let peak = peak_memory_mib();
        let (p, d) = (summary(&prefill), summary(&decode));
        if json_out {
            let text = serde_json::to_string(&json!({
                "model": model_name(&model),
                "backend": backend.name(),
                "threads": threads,
                "prompt_tokens": prompt_tokens,
                "decode_tokens": decode_tokens,
                "runs": runs,
                "load_seconds": load_seconds,
                "prefill_tok_s": {"min": p.0, "median": p.1, "max": p.2},
                "decode_tok_s": {"min": d.0, "median": d.1, "max": d.2},
                "peak_memory_mib": peak,
            }))
            .map_err(|e| e.to_string())?;
            println!("{text}");
        } else {
            println!(
                "model:    {} on {} ({threads} threads)",
                model_name(&model),
                backend.name()
            );
            println!("load:     {load_seconds:.2} s");
            println!(
                "prefill:  {prompt_tokens} tokens: {:.1} tok/s median (min {:.1}, max {:.1}, {runs} runs)",
                p.1, p.0, p.2
            );
            println!(
                "decode:   {decode_tokens} tokens: {:.1} tok/s median (min {:.1}, max {:.1}, {runs} runs)",
                d.1, d.0, d.2
            );
            match peak {
                Some(mib) => println!("peak RSS: {mib:.0} MiB"),
                None => println!("peak RSS: unknown on this system"),
            }
        }
        Ok(())
    })
}

/// (min, median, max)
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// The process's peak resident memory (Linux: VmHWM).
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
