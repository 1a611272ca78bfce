//! Shared by the model-level tests: the bundled model (loaded once per test binary) and the
//! llama.cpp fixtures.
#![allow(dead_code)]

use engine::cpu::CpuBackend;
use engine::language_model::LanguageModel;
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
