//! The Lab on the command line: interventions for `logits` and `generate` (`--ablate`,
//! `--steer`), attention policies (`--policy`, `--kv-budget`), `glassbox patch`, the
//! activation-patching sweep, `glassbox attribute`, direct logit attribution, and
//! `glassbox outliers`, outlier features and 8-bit activations.

use crate::commands::{load, print_json, read_text};
use crate::RunArgs;
use engine::analysis::attribution::direct_logit_attribution;
use engine::analysis::outliers::outlier_features;
use engine::analysis::patching::patching_sweep;
use engine::analysis::probes::{steering, steering_pair, steering_vector, STEERING_PAIRS};
use engine::analysis::set_prompt::{PromptPart, SetPrompt};
use engine::models::interventions::Interventions;
use engine::runtime::{AttentionPolicy, Engine};
use serde::Deserialize;
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args, Clone, Default)]
pub struct InterventionArgs {
    /// Zero-ablate these heads, `LAYER:HEAD[,LAYER:HEAD…]` (from 0): their output is replaced
    /// by zeros at every token.
    #[arg(long, value_delimiter = ',', value_parser = parse_head)]
    pub ablate: Vec<(usize, usize)>,
    /// Steer by contrastive activation addition: a ready pair (happy-sad, formal-casual,
    /// polite-rude) or a JSON file `{"positive": ["…"], "negative": ["…"]}`. The mean
    /// last-token residual of the positive prompts minus the negative ones, after
    /// --steer-layer, times --steer-alpha, is added there at every token.
    #[arg(long)]
    pub steer: Option<String>,
    /// The block after which the steering vector is added (default: a fifth of the way in,
    /// block 6 of SmolLM2's 30, where it shifts the tone and keeps the text fluent).
    #[arg(long, requires = "steer")]
    pub steer_layer: Option<usize>,
    /// The vector's scale (negative: towards the second side of the pair).
    #[arg(
        long,
        requires = "steer",
        default_value_t = 2.0,
        allow_negative_numbers = true
    )]
    pub steer_alpha: f32,
}

/// The attention policy of a generation or a chat.
#[derive(clap::Args, Clone, Default)]
pub struct PolicyArgs {
    /// An attention policy, under which generation goes on past the model's context:
    /// `lambda:GLOBAL,LOCAL` (LM-Infinite's Λ: every token sees the first GLOBAL tokens and
    /// the LOCAL most recent; the tokens between are evicted as the cache fills),
    /// `window:LOCAL` (a plain sliding window), `budget:N[,FIRST,RECENT]` (at most N cached
    /// tokens: the first, the recent and the most attended, as H2O), or `full` (the default).
    #[arg(long, value_parser = parse_policy)]
    pub policy: Option<AttentionPolicy>,
    /// A KV cache of at most N tokens: `--policy budget:N` (4 start tokens, N/4 recent, the
    /// rest by the attention they received).
    #[arg(long, conflicts_with = "policy")]
    pub kv_budget: Option<usize>,
}

fn parse_policy(text: &str) -> Result<AttentionPolicy, String> {
    AttentionPolicy::parse(text).map_err(|e| e.to_string())
}

impl PolicyArgs {
    pub fn policy(&self) -> AttentionPolicy {
        match (self.policy, self.kv_budget) {
            (Some(policy), _) => policy,
            (None, Some(budget)) => AttentionPolicy::budget(budget),
            (None, None) => AttentionPolicy::Full,
        }
    }

    /// The KV cache a session under this policy needs: a budget's own size, the model's
    /// context for Λ (it evicts only when that is full), else `wanted`.
    pub fn capacity(&self, engine: &Engine, wanted: usize) -> usize {
        match self.policy() {
            AttentionPolicy::Full => wanted,
            AttentionPolicy::Budget { budget, .. } => budget,
            AttentionPolicy::Lambda { .. } => engine.config().context_len,
        }
    }
}

fn parse_head(text: &str) -> Result<(usize, usize), String> {
    let parse = |s: &str| s.trim().parse::<usize>().ok();
    match text.split_once(':') {
        Some((layer, head)) => match (parse(layer), parse(head)) {
            (Some(layer), Some(head)) => Ok((layer, head)),
            _ => Err(format!("{text:?} is not LAYER:HEAD (two whole numbers)")),
        },
        None => Err(format!("{text:?} is not LAYER:HEAD, e.g. 3:5")),
    }
}

#[derive(Deserialize)]
struct SteeringFile {
    positive: Vec<String>,
    negative: Vec<String>,
}

impl InterventionArgs {
    /// The interventions these options ask for on `engine`'s model (checked against it).
    pub fn interventions(&self, engine: &Engine) -> Result<Interventions, String> {
        let mut interventions = Interventions::ablate_heads(&self.ablate);
        if let Some(steer) = &self.steer {
            let (positive, negative) = match steering_pair(steer) {
                Some(pair) => (
                    pair.positive.iter().map(|s| s.to_string()).collect(),
                    pair.negative.iter().map(|s| s.to_string()).collect(),
                ),
                None if Path::new(steer).exists() => {
                    let file: SteeringFile = serde_json::from_str(&read_text(Path::new(steer))?)
                        .map_err(|e| format!("{steer}: {e}"))?;
                    (file.positive, file.negative)
                }
                None => {
                    let names: Vec<&str> = STEERING_PAIRS.iter().map(|p| p.name).collect();
                    return Err(format!(
                        "--steer {steer}: neither a ready pair ({}) nor a file",
                        names.join(", ")
                    ));
                }
            };
            let encode = |texts: &Vec<String>| -> Result<Vec<Vec<u32>>, String> {
                texts.iter().map(|t| encode_from_start(engine, t)).collect()
            };
            let layer = self.steer_layer.unwrap_or(engine.config().n_layers / 5);
            let vector = pollster::block_on(steering_vector(
                engine,
                &encode(&positive)?,
                &encode(&negative)?,
                layer,
            ))
            .map_err(|e| e.to_string())?;
            interventions.steering = steering(layer, &vector, self.steer_alpha).steering;
        }
        interventions
            .check(engine.config())
            .map_err(|e| e.to_string())?;
        Ok(interventions)
    }
}

/// `text` tokenized as `logits` does: special tokens parsed, BOS first where the model wants it.
pub fn encode_from_start(engine: &Engine, text: &str) -> Result<Vec<u32>, String> {
    SetPrompt::encode_from_start(engine.tokenizer(), &[PromptPart::Text(text.to_string())])
        .map(|prompt| prompt.ids)
        .map_err(|e| e.to_string())
}

/// `glassbox patch`: the sweep's JSON on stdout, its time on stderr.
pub fn patch(run: &RunArgs, clean_file: &Path, corrupt_file: &Path) -> Result<(), String> {
    let engine = load(run)?;
    let clean = encode_from_start(&engine, &read_text(clean_file)?)?;
    let corrupt = encode_from_start(&engine, &read_text(corrupt_file)?)?;
    if clean.len() != corrupt.len() {
        return Err(format!(
            "the clean prompt is {} tokens and the corrupted one {}: patching needs the same \
             number (change a word for one that tokenizes to as many tokens)",
            clean.len(),
            corrupt.len()
        ));
    }
    let started = Instant::now();
    let layers = engine.config().n_layers;
    let sweep = pollster::block_on(patching_sweep(&engine, &clean, &corrupt, |p| {
        if p.done % layers == 0 {
            eprint!("\rpatched {} of {} (layer, token) pairs", p.done, p.total);
        }
        true
    }))
    .map_err(|e| e.to_string())?;
    eprintln!(
        "\r{} patched runs on {} in {:.2} s",
        layers * clean.len(),
        engine.backend_name(),
        started.elapsed().as_secs_f64()
    );
    print_json(&serde_json::to_value(&sweep).map_err(|e| e.to_string())?)
}

/// `glassbox attribute`: the next token's logit split into the embedding's, every head's and
/// every MLP's parts, as JSON.
pub fn attribute(run: &RunArgs, prompt_file: &Path, target: Option<u32>) -> Result<(), String> {
    let engine = load(run)?;
    let ids = encode_from_start(&engine, &read_text(prompt_file)?)?;
    let found = pollster::block_on(direct_logit_attribution(&engine, &ids, target))
        .map_err(|e| e.to_string())?;
    print_json(&serde_json::to_value(&found).map_err(|e| e.to_string())?)
}

/// `glassbox outliers`: each residual dimension's magnitude per layer, the ones that stand
/// out, and the prompt's next-token log-probs in f32 and with 8-bit activations, as JSON.
pub fn outliers(run: &RunArgs, prompt_file: &Path, threshold: Option<f32>) -> Result<(), String> {
    let engine = load(run)?;
    let ids = encode_from_start(&engine, &read_text(prompt_file)?)?;
    let report = pollster::block_on(outlier_features(&engine, &ids, threshold))
        .map_err(|e| e.to_string())?;
    for run in &report.runs {
        eprintln!(
            "{:<22} top-1 {:>6} ({:.3}), max |Δ log-prob| on the f32 top 5: {:.4}",
            run.name, run.top[0].0, run.top[0].1, run.max_logprob_drift
        );
    }
    print_json(&serde_json::to_value(&report).map_err(|e| e.to_string())?)
}
