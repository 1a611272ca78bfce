//! Shared by the model-level tests: the bundled model (loaded once per test binary) and the
//! llama.cpp fixtures.
#![allow(dead_code)]

use engine::backend::Backend;
use engine::cpu::CpuBackend;
use engine::numerics::{log_sum_exp, top_k};
use engine::runtime::{Feed, LanguageModel, Session};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../www/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask setup` fetches it (the model-level tests need it)",
        path.display()
    );
    path
}

/// Gemma 3 270M (Q4_K_M), the second test model, fetched by `cargo xtask setup`.
pub fn gemma_path() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www/models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask setup` fetches it (the Gemma tests need it)",
        path.display()
    );
    path
}

/// Gemma 3 270M on the CPU, loaded once per test binary.
pub fn gemma_cpu_model() -> &'static LanguageModel<CpuBackend> {
    static MODEL: OnceLock<LanguageModel<CpuBackend>> = OnceLock::new();
    MODEL.get_or_init(|| {
        LanguageModel::load_file(&CpuBackend::new(), &gemma_path()).expect("load Gemma 3")
    })
}

/// llama.cpp's outputs for Gemma 3 270M (`tools/llamacpp/make_gemma3_fixtures.py`).
pub fn gemma_fixtures() -> Fixtures {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llamacpp_gemma3.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bundled model behind the engine handle, on the CPU (loaded once per test thread: the
/// handle shares its weights through an `Rc`).
pub fn cpu_engine() -> engine::runtime::Engine {
    thread_local! {
        static ENGINE: engine::runtime::Engine =
            engine::runtime::Engine::load_file(engine::runtime::Device::Cpu, &model_path())
                .expect("load the bundled model");
    }
    ENGINE.with(Clone::clone)
}

pub fn cpu_model() -> &'static LanguageModel<CpuBackend> {
    static MODEL: OnceLock<LanguageModel<CpuBackend>> = OnceLock::new();
    MODEL.get_or_init(|| {
        LanguageModel::load_file(&CpuBackend::new(), &model_path()).expect("load the bundled model")
    })
}

#[derive(Deserialize)]
pub struct Fixtures {
    pub eog_ids: Vec<u32>,
    pub tokenize: Vec<TokenizeCase>,
    pub prompts: Vec<PromptCase>,
}

#[derive(Deserialize)]
pub struct TokenizeCase {
    pub text: String,
    pub ids: Vec<u32>,
}

#[derive(Deserialize)]
pub struct PromptCase {
    pub prompt: String,
    pub ids: Vec<u32>,
    pub top: Vec<TopEntry>,
    pub greedy_ids: Vec<u32>,
    pub greedy_margins: Vec<f32>,
    pub greedy_text: String,
}

#[derive(Deserialize, Clone, Copy)]
pub struct TopEntry {
    pub id: u32,
    pub logit: f32,
    pub logprob: f32,
}

/// llama.cpp's outputs: the public set (from the project brief), then our own additions.
pub fn fixtures() -> [Fixtures; 2] {
    let read = |name: &str| -> Fixtures {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    [read("llamacpp_public.json"), read("llamacpp_glassbox.json")]
}

/// The bound, for the public fixture.
pub const LOGPROB_TOLERANCE: f32 = 0.25;
/// llama.cpp's spread against itself, for our own cases (see llamacpp_fidelity.rs).
pub const LOGPROB_TOLERANCE_OWN_CASES: f32 = 0.6;
/// Greedy steps are compared while llama.cpp's top-1 margin is above this.
pub const MARGIN_THRESHOLD: f32 = 0.5;

/// A prompt's next-token logits and greedy continuation (ids and top-1 margins), on any backend.
pub struct Greedy {
    pub logits: Vec<f32>,
    pub ids: Vec<u32>,
    pub margins: Vec<f32>,
}

/// Runs `ids` and then up to `steps` greedy tokens (stopping at an end of generation).
pub fn greedy_run<B: Backend>(
    model: &LanguageModel<B>,
    backend: &B,
    ids: &[u32],
    steps: usize,
) -> Greedy {
    let mut session = Session::new(model, backend, 1024).unwrap();
    let mut logits = pollster::block_on(session.feed(model, backend, Feed::append(ids)))
        .unwrap()
        .logits;
    let first = logits.clone();
    let (mut out, mut margins) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let best = top_k(&logits, 2);
        out.push(best[0].0);
        margins.push(best[0].1 - best[1].1);
        if model.tokenizer.is_end_of_generation(best[0].0) {
            break;
        }
        logits = pollster::block_on(session.feed(model, backend, Feed::append(&[best[0].0])))
            .unwrap()
            .logits;
    }
    Greedy {
        logits: first,
        ids: out,
        margins,
    }
}

/// Checks a run against llama.cpp's fixture for the prompt: the same top-1 (always for the
/// public fixture, else where llama.cpp's own margin is clear), top-5 sharing at least 4,
/// |Δ log-prob| ≤ `tolerance` on llama.cpp's top 5, and the same greedy ids up to the first
/// step where llama.cpp's margin is ≤ 0.5.
pub fn check_against_llamacpp(
    run: &Greedy,
    case: &PromptCase,
    tolerance: f32,
    top1_always: bool,
) -> Result<(), String> {
    let lse = log_sum_exp(&run.logits);
    let ours: Vec<u32> = top_k(&run.logits, 5)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let theirs: Vec<u32> = case.top.iter().take(5).map(|t| t.id).collect();
    let clear_margin = case.top[0].logit - case.top[1].logit > MARGIN_THRESHOLD;
    if ours[0] != theirs[0] && (top1_always || clear_margin) {
        return Err(format!("top-1 {} vs llama.cpp {}", ours[0], theirs[0]));
    }
    let shared = ours.iter().filter(|id| theirs.contains(id)).count();
    if shared < 4 {
        return Err(format!("top-5 share {shared}: {ours:?} vs {theirs:?}"));
    }
    for t in case.top.iter().take(5) {
        let logprob = run.logits[t.id as usize] - lse;
        if (logprob - t.logprob).abs() > tolerance {
            return Err(format!(
                "token {}: log-prob {logprob} vs llama.cpp {}",
                t.id, t.logprob
            ));
        }
    }
    for (step, (&want, &margin)) in case.greedy_ids.iter().zip(&case.greedy_margins).enumerate() {
        if margin <= MARGIN_THRESHOLD {
            break;
        }
        match run.ids.get(step) {
            Some(&got) if got == want => {}
            got => {
                return Err(format!(
                    "greedy step {step}: {got:?} vs llama.cpp {want} (margin {margin})"
                ))
            }
        }
    }
    Ok(())
}

/// The WebGPU backend, or `None` (test skipped, with a message) where no adapter exists, unless
/// `GLASSBOX_REQUIRE_GPU=1` (as `cargo xtask test` sets): then a missing adapter fails.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_or_skip() -> Option<engine::gpu::GpuBackend> {
    match pollster::block_on(engine::gpu::GpuBackend::create()) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let required = std::env::var("GLASSBOX_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "GLASSBOX_REQUIRE_GPU=1 but: {e}");
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// The largest |Δ log-prob| between two logit rows over `a`'s top 5.
pub fn logprob_gap(a: &[f32], b: &[f32]) -> f32 {
    let (la, lb) = (log_sum_exp(a), log_sum_exp(b));
    top_k(a, 5)
        .iter()
        .map(|&(id, logit)| ((logit - la) - (b[id as usize] - lb)).abs())
        .fold(0.0, f32::max)
}
