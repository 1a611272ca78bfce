//! The data commands: tokenize, logits, generate, chat, attention (the Lab's are in `lab`). Each runs on the engine
//! handle, whichever backend `--backend` picked.

use crate::lab::{InterventionArgs, PolicyArgs};
use crate::{BackendChoice, ModelArgs, PromptArgs, RunArgs, SamplingArgs};
use engine::analysis::inspect::Inspection;
use engine::analysis::set_prompt::{PartIds, PromptPart, SetPrompt};
use engine::backend::Selection;
use engine::gguf::{GgufEvent, GgufStream, Limits};
use engine::models::pass::Activations;
use engine::numerics::{log_sum_exp, top_k};
use engine::runtime::sampling::{Sampler, SamplingParams};
use engine::runtime::{Device, Engine, EngineSession, Feed};
use engine::text::chat::{fit_conversation, ChatMessage, ChatTemplate};
use engine::text::tokenizer::{TokenStream, Tokenizer};
use serde_json::json;
use std::io::{BufRead, Read, Write};
use std::path::Path;

/// `--threads`: the CPU kernels' pool; at least 1, at most the machine's parallelism.
pub fn configure_threads(run: &RunArgs) -> Result<(), String> {
    if let Some(n) = run.threads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if n == 0 || n > cores {
            return Err(format!(
                "--threads {n}: this machine runs 1 to {cores} threads at once"
            ));
        }
        engine::cpu::pool::set_threads(n);
    }
    Ok(())
}

/// The device `--backend` names (and `--threads` applied).
pub fn device(run: &RunArgs) -> Result<Device, String> {
    configure_threads(run)?;
    match run.backend {
        BackendChoice::Cpu => Ok(Device::Cpu),
        BackendChoice::Webgpu => Ok(Device::WebGpu(webgpu_backend()?)),
    }
}

/// The WebGPU backend (natively: Vulkan), or a message saying why there is none.
pub fn webgpu_backend() -> Result<engine::gpu::GpuBackend, String> {
    pollster::block_on(engine::gpu::GpuBackend::create())
        .map_err(|e| format!("{e} (use --backend cpu)"))
}

/// The chat model on `device`.
pub fn load_on(device: Device, model: &ModelArgs) -> Result<Engine, String> {
    let path = model.path()?;
    Engine::load_file(device, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The chat model on the device `--backend` names.
pub fn load(run: &RunArgs) -> Result<Engine, String> {
    load_on(device(run)?, &run.model)
}

pub fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// Reads a GGUF file's header only, stopping at the first tensor's bytes.
pub fn read_header(path: &Path) -> Result<std::sync::Arc<engine::gguf::GgufHeader>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).ok();
    let mut stream = GgufStream::new(Limits::default(), len);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "{}: the file ends inside the header",
                path.display()
            ));
        }
        let events = stream
            .push(&buffer[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(GgufEvent::Header(h)) = events.into_iter().next() {
            return Ok(h);
        }
    }
}

/// Only the tokenizer is needed: read the header and stop. `with_bos`: each string as a prompt
/// fed from its start (BOS first where the model wants it).
pub fn tokenize(model: &ModelArgs, json_file: &Path, with_bos: bool) -> Result<(), String> {
    let header = read_header(&model.path()?)?;
    let tokenizer = Tokenizer::from_gguf(&header).map_err(|e| e.to_string())?;
    let strings: Vec<String> = serde_json::from_str(&read_text(json_file)?).map_err(|e| {
        format!(
            "{}: expected a JSON array of strings: {e}",
            json_file.display()
        )
    })?;
    let ids = strings
        .iter()
        .map(|s| {
            let ids = tokenizer.encode(s)?;
            Ok(if with_bos {
                tokenizer.with_bos(&ids)
            } else {
                ids
            })
        })
        .collect::<engine::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    print_json(&json!(ids))
}

/// A prompt read from `--prompt-file` or `--set-file`, as ids with positions and mask.
enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Set { parts: Vec<PromptPart>, plain: bool },
}

impl Prompt {
    /// Whether the prompt has a set laid out in parallel (not a plain sequence).
    fn is_set(&self) -> bool {
        matches!(self, Prompt::Set { plain: false, .. })
    }
}

/// The set file's two shapes (see `--set-file`).
#[derive(serde::Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum SetFile {
    OneSet {
        #[serde(default)]
        prefix: String,
        members: Vec<String>,
        #[serde(default)]
        suffix: String,
    },
    Parts {
        parts: Vec<PromptPart>,
    },
}

impl Prompt {
    fn read(args: &PromptArgs) -> Result<Prompt, String> {
        if let Some(path) = &args.ids_file {
            let ids = serde_json::from_str(&read_text(path)?)
                .map_err(|e| format!("{}: expected a JSON array of ids ({e})", path.display()))?;
            return Ok(Prompt::Ids(ids));
        }
        match (&args.prompt_file, &args.set_file) {
            (Some(path), None) => Ok(Prompt::Text(read_text(path)?)),
            (None, Some(path)) => {
                let file: SetFile = serde_json::from_str(&read_text(path)?).map_err(|_| {
                    format!(
                        "{}: expected {{\"prefix\": \"...\", \"members\": [\"...\", ...], \
                         \"suffix\": \"...\"}} or {{\"parts\": [{{\"text\": \"...\"}}, \
                         {{\"set\": [\"...\", ...]}}]}}",
                        path.display()
                    )
                })?;
                let parts = match file {
                    SetFile::OneSet {
                        prefix,
                        members,
                        suffix,
                    } => [
                        PromptPart::Text(prefix),
                        PromptPart::Set(members),
                        PromptPart::Text(suffix),
                    ]
                    .into_iter()
                    .filter(|p| !matches!(p, PromptPart::Text(t) if t.is_empty()))
                    .collect(),
                    SetFile::Parts { parts } => parts,
                };
                Ok(Prompt::Set {
                    parts,
                    plain: args.plain,
                })
            }
            _ => Err("give --prompt-file, --set-file or --ids-file".into()),
        }
    }

    /// Tokenized and laid out; a text prompt is one plain sequence.
    /// Text and set prompts start with BOS when the model wants it; ids are fed as given.
    fn layout(&self, tokenizer: &Tokenizer) -> engine::Result<SetPrompt> {
        match self {
            Prompt::Text(text) => {
                SetPrompt::encode_from_start(tokenizer, &[PromptPart::Text(text.clone())])
            }
            Prompt::Ids(ids) => {
                if let Some(bad) = ids
                    .iter()
                    .find(|&&id| id as usize >= tokenizer.vocab_size())
                {
                    return Err(engine::Error::InvalidRequest(format!(
                        "token id {bad} is outside the vocabulary"
                    )));
                }
                SetPrompt::from_ids(&[PartIds::Text(ids.clone())])
            }
            Prompt::Set { parts, plain } => {
                let prompt = SetPrompt::encode_from_start(tokenizer, parts)?;
                Ok(if *plain { prompt.plain() } else { prompt })
            }
        }
    }
}

pub fn logits(
    run: &RunArgs,
    prompt: &PromptArgs,
    top: usize,
    lab: &InterventionArgs,
) -> Result<(), String> {
    let prompt = Prompt::read(prompt)?;
    let engine = load(run)?;
    let interventions = lab.interventions(&engine)?;
    let layout = prompt
        .layout(engine.tokenizer())
        .map_err(|e| e.to_string())?;
    // The KV cache is sized for this prompt, not the model's whole context.
    let mut session = engine
        .session(layout.ids.len())
        .map_err(|e| e.to_string())?;
    let feed = Feed::layout(layout.layout()).interventions(&interventions);
    let fed = pollster::block_on(session.feed(feed)).map_err(|e| e.to_string())?;
    let mut value = logits_json(&layout.ids, &fed.logits, top);
    if matches!(prompt, Prompt::Set { .. }) {
        value["positions"] = json!(layout.positions);
    }
    print_json(&value)
}

pub fn attention(
    run: &RunArgs,
    prompt: &PromptArgs,
    layer: usize,
    head: usize,
    lens_token: Option<usize>,
) -> Result<(), String> {
    let prompt = Prompt::read(prompt)?;
    let engine = load(run)?;
    let tokenizer = engine.tokenizer();
    let layout = prompt.layout(tokenizer).map_err(|e| e.to_string())?;
    // One layer's attention is kept, `heads · t²` floats: refuse what would not fit.
    let (t, heads) = (layout.ids.len(), engine.config().n_heads);
    let max_tokens = ((MAX_ATTENTION_BYTES / 4 / heads.max(1)) as f64).sqrt() as usize;
    if t > max_tokens {
        return Err(format!(
            "the prompt is {t} tokens; one layer's attention of {heads} heads is kept whole, \
             which allows at most {max_tokens} tokens"
        ));
    }
    let inspection = pollster::block_on(Inspection::capture_layer(&engine, layout.layout(), layer))
        .map_err(|e| e.to_string())?;
    let t = inspection.tokens();
    let probs: Vec<&[f32]> = inspection
        .head(layer, head)
        .map_err(|e| e.to_string())?
        .chunks(t)
        .collect();
    let tokens: Vec<String> = layout
        .ids
        .iter()
        .map(|&id| tokenizer.token_label(id))
        .collect();
    let mut value = json!({
        "ids": layout.ids,
        "tokens": tokens,
        "positions": layout.positions,
        "layer": layer,
        "head": head,
        "probs": probs,
    });
    if let Some(index) = lens_token {
        let lens = pollster::block_on(inspection.logit_lens(&engine, index, 5))
            .map_err(|e| e.to_string())?;
        value["lens"] = lens
            .iter()
            .map(|row| {
                row.iter()
                    .map(
                        |&(id, p)| json!({"id": id, "token": tokenizer.token_label(id), "prob": p}),
                    )
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    print_json(&value)
}

/// The most memory `glassbox attention` keeps for one layer's attention.
const MAX_ATTENTION_BYTES: usize = 1 << 30;

pub fn logits_json(ids: &[u32], logits: &[f32], top: usize) -> serde_json::Value {
    let lse = log_sum_exp(logits);
    let top: Vec<_> = top_k(logits, top)
        .into_iter()
        .map(|(id, logit)| json!({"id": id, "logit": logit, "logprob": logit - lse}))
        .collect();
    json!({"ids": ids, "top": top})
}

pub fn sampling_params(args: &SamplingArgs) -> SamplingParams {
    if args.greedy {
        SamplingParams::greedy()
    } else {
        SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repeat_penalty: args.repeat_penalty,
            repeat_last_n: 64,
            seed: args.seed,
        }
    }
}

pub fn generate(
    run: &RunArgs,
    prompt: &PromptArgs,
    max_tokens: usize,
    sampling: &SamplingArgs,
    json_out: bool,
    lab: &InterventionArgs,
    policy: &PolicyArgs,
) -> Result<(), String> {
    let prompt = Prompt::read(prompt)?;
    let engine = load(run)?;
    let interventions = lab.interventions(&engine)?;
    let tokenizer = engine.tokenizer();
    let layout = prompt.layout(tokenizer).map_err(|e| e.to_string())?;
    // The KV cache is sized for the prompt and the reply (at most the model's context).
    let wanted = layout.ids.len().saturating_add(max_tokens);
    let mut session = engine
        .session(policy.capacity(&engine, wanted))
        .map_err(|e| e.to_string())?;
    session
        .set_policy(policy.policy())
        .map_err(|e| e.to_string())?;
    let feed = if session.policy().evicts() {
        // A policy moves tokens in the cache: only a plain sequence can be fed under it.
        if prompt.is_set() {
            return Err("a set prompt cannot run under an attention policy".into());
        }
        Feed::append(&layout.ids)
    } else {
        Feed::layout(layout.layout())
    };
    let mut sampler = Sampler::new(sampling_params(sampling));
    let mut printer = TokenStream::new();
    let generated = generate_tokens(
        &engine,
        &mut session,
        feed.interventions(&interventions),
        &mut sampler,
        max_tokens,
        |id| {
            if !json_out {
                print!("{}", printer.push(tokenizer, id));
                let _ = std::io::stdout().flush();
            }
        },
    )
    .map_err(|e| e.to_string())?;
    if json_out {
        print_json(&json!({"ids": generated, "text": tokenizer.decode(&generated)}))
    } else {
        println!("{}", printer.finish());
        Ok(())
    }
}

/// Feeds `prompt` and samples up to `max_tokens` tokens, calling `on_token` for each; stops
/// after an end-of-generation token (included in the result). Each step runs under the
/// prompt's interventions.
pub fn generate_tokens(
    engine: &Engine,
    session: &mut EngineSession,
    prompt: Feed<'_>,
    sampler: &mut Sampler,
    max_tokens: usize,
    mut on_token: impl FnMut(u32),
) -> engine::Result<Vec<u32>> {
    let vocab = engine.config().vocab_size;
    let selection = |session: &EngineSession, sampler: &Sampler| -> Selection {
        sampler.selection(session.tokens(), vocab)
    };
    let interventions = prompt.interventions;
    // Sampling compares nothing across backends: the fastest products, interventions or not
    // (Activations::Auto would run steered or ablated generation in f32, several times slower).
    let first = prompt
        .top_k(selection(session, sampler))
        .activations(Activations::Fastest);
    let mut candidates = pollster::block_on(session.feed(first))?.top;
    let mut generated = Vec::new();
    while generated.len() < max_tokens {
        let next = sampler.pick(&candidates);
        generated.push(next);
        on_token(next);
        if engine.tokenizer().is_end_of_generation(next) || generated.len() == max_tokens {
            break;
        }
        if session.tokens().len() >= session.capacity() && !session.policy().evicts() {
            eprintln!(
                "glassbox: the context is full ({} tokens)",
                session.capacity()
            );
            break;
        }
        let next = [next];
        let mut feed = Feed::append(&next)
            .top_k(selection(session, sampler))
            .activations(Activations::Fastest);
        feed.interventions = interventions;
        candidates = pollster::block_on(session.feed(feed))?.top;
    }
    Ok(generated)
}

pub fn chat(
    run: &RunArgs,
    system: Option<&str>,
    max_tokens: usize,
    sampling: &SamplingArgs,
    policy: &PolicyArgs,
) -> Result<(), String> {
    // The conversation outlives a backend: if the GPU fails, the chat goes on on the CPU.
    let mut messages: Vec<ChatMessage> = system
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .collect();
    let mut sampler = Sampler::new(sampling_params(sampling));
    if run.backend == BackendChoice::Webgpu {
        let engine = load(run)?;
        match chat_loop(&engine, &mut messages, &mut sampler, max_tokens, policy) {
            Err(ChatStop::Gpu(e)) => {
                eprintln!("\nglassbox: the GPU failed ({e}); the conversation goes on on the CPU.")
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
    configure_threads(run)?;
    let engine = load_on(Device::Cpu, &run.model)?;
    chat_loop(&engine, &mut messages, &mut sampler, max_tokens, policy).map_err(|e| e.to_string())
}

enum ChatStop {
    Gpu(engine::gpu::GpuError),
    Other(String),
}

impl std::fmt::Display for ChatStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatStop::Gpu(e) => write!(f, "{e}"),
            ChatStop::Other(e) => f.write_str(e),
        }
    }
}

impl From<engine::Error> for ChatStop {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::Gpu(gpu) => ChatStop::Gpu(gpu),
            other => ChatStop::Other(other.to_string()),
        }
    }
}

/// Reads the user's lines and answers them, `messages` holding the conversation so far (the
/// last message may be a user's turn still unanswered, as after a GPU failure).
fn chat_loop(
    engine: &Engine,
    messages: &mut Vec<ChatMessage>,
    sampler: &mut Sampler,
    max_tokens: usize,
    policy: &PolicyArgs,
) -> Result<(), ChatStop> {
    let tokenizer = engine.tokenizer();
    let fallback;
    let template = match (engine.template(), engine.template_error()) {
        (Some(template), _) => template,
        (None, Some(error)) => {
            eprintln!(
                "glassbox: the model's chat template fails ({error}); the chat uses a plain \
                 \"role: text\" format instead"
            );
            fallback = ChatTemplate::fallback(tokenizer);
            &fallback
        }
        (None, None) => {
            return Err(ChatStop::Other(
                "this model has no chat template (a base model): use `glassbox generate` \
                 to continue a text"
                    .into(),
            ))
        }
    };
    // A chat rarely needs the model's whole context; the KV cache is sized for this much.
    let context = engine.config().context_len.min(CHAT_CONTEXT);
    let mut session = engine.session(policy.capacity(engine, context))?;
    session.set_policy(policy.policy())?;
    // Under a policy that evicts, the conversation may outgrow the cache: it is never cut.
    let context = if session.policy().evicts() {
        usize::MAX / 2
    } else {
        context
    };
    eprintln!(
        "Chatting with {} on {} (empty line or Ctrl-D quits).",
        engine.name(),
        engine.backend_name()
    );
    let stdin = std::io::stdin();
    loop {
        if messages.last().is_none_or(|m| m.role != "user") {
            eprint!("\n> ");
            let mut line = String::new();
            let read = stdin
                .lock()
                .read_line(&mut line)
                .map_err(|e| ChatStop::Other(e.to_string()))?;
            if read == 0 || line.trim().is_empty() {
                return Ok(());
            }
            messages.push(ChatMessage::new("user", line.trim_end()));
        }
        // Room for the reply; the oldest turns go when the conversation outgrows the context.
        let reserve = max_tokens.min(context / 4);
        let fitted = match fit_conversation(template, tokenizer, messages, context, reserve) {
            Ok(fitted) => fitted,
            Err(engine::Error::ContextOverflow { .. }) => {
                messages.pop();
                eprintln!(
                    "glassbox: that message is too long for the {context}-token context \
                     (with room for a reply); it was not added. Send a shorter one."
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if fitted.dropped > 0 {
            let system = usize::from(messages[0].role == "system");
            messages.drain(system..system + fitted.dropped);
            eprintln!(
                "glassbox: the conversation outgrew the {context}-token context: the {} oldest \
                 messages were dropped (the system prompt stays)",
                fitted.dropped
            );
        }
        let mut printer = TokenStream::new();
        // The cache already holds the conversation's common prefix: only the rest is fed.
        let reply = generate_tokens(
            engine,
            &mut session,
            Feed::sequence(&fitted.ids),
            sampler,
            max_tokens,
            |id| {
                if !tokenizer.is_end_of_generation(id) {
                    print!("{}", printer.push(tokenizer, id));
                    let _ = std::io::stdout().flush();
                }
            },
        )?;
        println!("{}", printer.finish());
        let ended = reply
            .last()
            .is_some_and(|&id| tokenizer.is_end_of_generation(id));
        if !ended && session.tokens().len() >= session.capacity() && !session.policy().evicts() {
            eprintln!("glassbox: [the reply was cut: the context is full]");
        }
        let text: Vec<u32> = reply
            .into_iter()
            .filter(|&id| !tokenizer.is_end_of_generation(id))
            .collect();
        messages.push(ChatMessage::new("assistant", &tokenizer.decode(&text)));
    }
}

/// The longest context `glassbox chat` keeps (its KV cache is allocated for it).
const CHAT_CONTEXT: usize = 8192;
