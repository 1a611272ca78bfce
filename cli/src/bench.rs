//! `glassbox bench`: prefill and decode speed, the attention explorer's capture cost (all taps
//! against none), load time and peak memory (and, on WebGPU, GPU
//! time per kernel family and GPU memory). A benchmark that prints numbers, never a test:
//! timings on a shared 2-core machine are noisy, so it reports min / median / max.

use crate::commands::{configure_threads, load_on, read_text, webgpu_backend};
use crate::{BackendChoice, RunArgs};
use engine::analysis::inspect::Inspection;
use engine::backend::Selection;
use engine::runtime::{Device, Engine, EngineSession, Feed, Layout};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// The explorer's capture is timed on this many tokens (a 256-token exchange).
const INSPECT_TOKENS: usize = 256;

/// A fixed English text, long enough for a ≥ 400-token prompt.
pub const BENCH_TEXT: &str = include_str!("bench_prompt.txt");

pub struct Settings {
    pub prompt: BenchPrompt,
    pub decode_tokens: usize,
    pub runs: usize,
    /// Whether each run also times the explorer's capture.
    pub explorer: bool,
}

/// What the prefill is fed.
pub enum BenchPrompt {
    /// The first N tokens of [`BENCH_TEXT`] (no BOS).
    TextTokens(usize),
    /// Token ids from a JSON array, as they are (`bench-compare` gives every engine the same).
    IdsFile(PathBuf),
}

impl BenchPrompt {
    fn ids(&self, engine: &Engine) -> Result<Vec<u32>, String> {
        let tokenizer = engine.tokenizer();
        match self {
            BenchPrompt::TextTokens(n) => {
                let mut ids = tokenizer.encode(BENCH_TEXT).map_err(|e| e.to_string())?;
                if ids.len() < *n {
                    return Err(format!("the bench text has only {} tokens", ids.len()));
                }
                ids.truncate(*n);
                Ok(ids)
            }
            BenchPrompt::IdsFile(path) => {
                let ids: Vec<u32> = serde_json::from_str(&read_text(path)?).map_err(|e| {
                    format!("{}: expected a JSON array of ids ({e})", path.display())
                })?;
                if ids.is_empty() {
                    return Err(format!("{}: no token ids", path.display()));
                }
                match ids
                    .iter()
                    .find(|&&id| id as usize >= tokenizer.vocab_size())
                {
                    Some(bad) => Err(format!(
                        "{}: token id {bad} is outside the vocabulary",
                        path.display()
                    )),
                    None => Ok(ids),
                }
            }
        }
    }
}

pub fn run(run: &RunArgs, settings: Settings, json_out: bool) -> Result<(), String> {
    configure_threads(run)?;
    let device = match run.backend {
        BackendChoice::Cpu => Device::Cpu,
        BackendChoice::Webgpu => {
            let gpu = webgpu_backend()?;
            gpu.enable_profiling();
            Device::WebGpu(gpu)
        }
    };
    let started = Instant::now();
    let engine = load_on(device, &run.model)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let mut report = measure(&engine, &settings)?;
    report["load_seconds"] = json!(load_seconds);
    match engine.gpu() {
        None => report["threads"] = json!(engine::cpu::pool::global().threads()),
        Some(gpu) => {
            let (weights, caches) = gpu.memory_bytes();
            report["gpu_memory_mib"] = json!({
                "weights": weights as f64 / (1 << 20) as f64,
                "kv_caches": caches as f64 / (1 << 20) as f64,
            });
            let times = gpu.kernel_times();
            report["kernel_ms"] = if gpu.context().timestamps {
                times
                    .into_iter()
                    .map(|(family, ms, n)| json!({"family": family, "ms": ms, "dispatches": n}))
                    .collect()
            } else {
                json!("this adapter has no timestamp queries")
            };
        }
    }
    report["peak_rss_mib"] = json!(peak_memory_mib());
    if json_out {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Times `runs` × (prefill of the prompt + greedy decode steps), and the explorer's capture.
fn measure(engine: &Engine, s: &Settings) -> Result<Value, String> {
    let ids = s.prompt.ids(engine)?;
    let greedy_next = |session: &mut EngineSession, ids: &[u32]| -> Result<u32, String> {
        let fed = pollster::block_on(session.feed(Feed::append(ids).top_k(Selection::greedy())))
            .map_err(|e| e.to_string())?;
        fed.top
            .first()
            .map(|&(id, _)| id)
            .ok_or("no candidate".into())
    };
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    let (mut plain_short, mut inspect) = (Vec::new(), Vec::new());
    // On WebGPU: submits and dispatches per decode step.
    let mut decode_work = None;
    for _ in 0..s.runs {
        let mut session = engine
            .session(ids.len() + s.decode_tokens + 1)
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let mut next = greedy_next(&mut session, &ids)?;
        prefill.push(ids.len() as f64 / t0.elapsed().as_secs_f64());
        let counts_before = engine.gpu().map(|g| g.work_counts());
        let t1 = Instant::now();
        for _ in 0..s.decode_tokens {
            next = greedy_next(&mut session, &[next])?;
        }
        decode.push(s.decode_tokens as f64 / t1.elapsed().as_secs_f64());
        if let (Some(before), Some(gpu)) = (counts_before, engine.gpu()) {
            let after = gpu.work_counts();
            let steps = s.decode_tokens.max(1) as f64;
            decode_work = Some(json!({
                "submits": (after.submits - before.submits) as f64 / steps,
                "dispatches": (after.dispatches - before.dispatches) as f64 / steps,
            }));
        }

        if !s.explorer {
            continue;
        }
        // The explorer's capture against the same prefill without taps, on the tokens it takes.
        let short = &ids[..ids.len().min(INSPECT_TOKENS)];
        let mut session = engine.session(short.len()).map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        greedy_next(&mut session, short)?;
        plain_short.push(short.len() as f64 / t2.elapsed().as_secs_f64());
        let positions: Vec<u32> = (0..short.len() as u32).collect();
        let layout = Layout {
            ids: short,
            positions: &positions,
            visible: None,
        };
        let t3 = Instant::now();
        pollster::block_on(Inspection::capture(engine, layout)).map_err(|e| e.to_string())?;
        inspect.push(short.len() as f64 / t3.elapsed().as_secs_f64());
    }
    Ok(json!({
        "model": engine.name(),
        "backend": engine.backend_name(),
        "prompt_tokens": ids.len(),
        "decode_tokens": s.decode_tokens,
        "runs": s.runs,
        "prefill_tok_s": summary(&prefill),
        "decode_tok_s": summary(&decode),
        "decode_step_work": decode_work,
        "inspect_tokens": ids.len().min(INSPECT_TOKENS),
        "prefill_without_taps_tok_s": s.explorer.then(|| summary(&plain_short)),
        "prefill_with_all_taps_tok_s": s.explorer.then(|| summary(&inspect)),
    }))
}

fn print_report(r: &Value) {
    let threads = r["threads"]
        .as_u64()
        .map(|t| format!(" ({t} threads)"))
        .unwrap_or_default();
    println!(
        "model:    {} on {}{threads}",
        r["model"].as_str().unwrap_or("?"),
        r["backend"].as_str().unwrap_or("?")
    );
    println!(
        "load:     {:.2} s",
        r["load_seconds"].as_f64().unwrap_or(0.0)
    );
    for (label, key, n) in [
        ("prefill", "prefill_tok_s", "prompt_tokens"),
        ("decode", "decode_tok_s", "decode_tokens"),
    ] {
        let v = &r[key];
        println!(
            "{label}:{} {} tokens: {:.1} tok/s median (min {:.1}, max {:.1}, {} runs)",
            " ".repeat(8 - label.len()),
            r[n],
            v["median"].as_f64().unwrap_or(0.0),
            v["min"].as_f64().unwrap_or(0.0),
            v["max"].as_f64().unwrap_or(0.0),
            r["runs"]
        );
    }
    let (plain, taps) = (
        &r["prefill_without_taps_tok_s"],
        &r["prefill_with_all_taps_tok_s"],
    );
    if taps.is_null() {
        println!("explorer: not timed (--skip-explorer)");
    } else {
        println!(
            "explorer: {} tokens: {:.1} tok/s with every tap captured and read back, {:.1} without (medians)",
            r["inspect_tokens"],
            taps["median"].as_f64().unwrap_or(0.0),
            plain["median"].as_f64().unwrap_or(0.0),
        );
    }
    match r["peak_rss_mib"].as_f64() {
        Some(mib) => println!("peak RSS: {mib:.0} MiB"),
        None => println!("peak RSS: unknown on this system"),
    }
    if let Some(gpu) = r.get("gpu_memory_mib") {
        println!(
            "GPU mem:  {:.1} MiB weights, {:.1} MiB KV caches",
            gpu["weights"].as_f64().unwrap_or(0.0),
            gpu["kv_caches"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(work) = r.get("decode_step_work").filter(|w| !w.is_null()) {
        println!(
            "GPU work: {:.1} submit(s) and {:.0} dispatches per decode step (the step's read-back is its sampled token)",
            work["submits"].as_f64().unwrap_or(0.0),
            work["dispatches"].as_f64().unwrap_or(0.0)
        );
    }
    match r.get("kernel_ms") {
        Some(Value::Array(rows)) => {
            println!("GPU time per kernel family (all runs):");
            for row in rows {
                println!(
                    "  {:<18} {:>9.1} ms  {:>7} dispatches",
                    row["family"].as_str().unwrap_or("?"),
                    row["ms"].as_f64().unwrap_or(0.0),
                    row["dispatches"]
                );
            }
        }
        Some(Value::String(note)) => println!("GPU time per kernel family: {note}"),
        _ => {}
    }
}

/// {min, median, max}
fn summary(values: &[f64]) -> Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    json!({"min": v[0], "median": v[v.len() / 2], "max": v[v.len() - 1]})
}

/// The process's peak resident memory (Linux: VmHWM).
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
