//! The model check: a GGUF's header, read before its weights are fetched (from the stored copy,
//! from the file, or from a URL with Range requests that grow until the header is whole), and
//! what it means here: which tier runs the model and with how long a context, from
//! `engine::runtime::budget::plan` against the device's limits (the WebGPU adapter's buffer
//! limits, `navigator.deviceMemory`, the storage estimate, wasm32's address space).

use super::js;
use super::store::{LoadError, Store};
use crate::protocol::TierChoice;
use engine::gguf::{GgufEvent, GgufHeader, GgufStream, Limits};
use engine::runtime::budget::{plan, DeviceLimits, ModelSummary, Plan, Tier};
use engine::text::tokenizer::Tokenizer;
use std::cell::Cell;
use std::sync::Arc;
use wasm_bindgen::JsCast;

/// The page keeps conversations shorter than the models' own contexts (SmolLM2's 8,192, Gemma
/// 3's 32,768): the KV cache of the CPU tier lives in wasm memory.
pub const PAGE_CONTEXT: usize = 2048;
/// The first Range request asks for this much; each next one for twice as much.
const FIRST_SPAN: u64 = 256 << 10;

/// A header and the size of the file it heads.
pub struct Probed {
    pub header: Arc<GgufHeader>,
    pub bytes: u64,
}

fn header_error(e: impl std::fmt::Display) -> LoadError {
    LoadError::new(format!("this is not a model Glassbox can read: {e}"), false)
}

fn stopped() -> LoadError {
    LoadError::new("cancelled", true)
}

/// Pushes `chunk`; the header once it is whole.
fn push(stream: &mut GgufStream, chunk: &[u8]) -> Result<Option<Arc<GgufHeader>>, LoadError> {
    let events = stream.push(chunk).map_err(header_error)?;
    Ok(events.into_iter().find_map(|e| match e {
        GgufEvent::Header(h) => Some(h),
        GgufEvent::Tensor(_) => None,
    }))
}

fn truncated(have: u64) -> LoadError {
    LoadError::new(
        format!("the file ends after {have} bytes, before its GGUF header does: it is truncated or not a GGUF file"),
        false,
    )
}

/// The header of a file the user opened.
pub async fn from_file(file: &web_sys::File, stop: &Cell<bool>) -> Result<Probed, LoadError> {
    let bytes = file.size() as u64;
    let mut stream = GgufStream::new(Limits::default(), Some(bytes));
    let (mut at, mut span) = (0, FIRST_SPAN);
    while at < bytes {
        if stop.get() {
            return Err(stopped());
        }
        let end = (at + span).min(bytes);
        let chunk = js::read_file(file, at, end)
            .await
            .map_err(|e| LoadError::new(format!("cannot read the file: {e}"), true))?;
        if let Some(header) = push(&mut stream, &chunk)? {
            return Ok(Probed { header, bytes });
        }
        at = end;
        span *= 2;
    }
    Err(truncated(at))
}

/// The header of a stored copy.
pub async fn from_storage(store: &Store, storage: &str, bytes: u64) -> Result<Probed, LoadError> {
    let mut stream = GgufStream::new(Limits::default(), Some(bytes));
    let mut reader = store
        .storage
        .reader(storage, bytes)
        .await
        .map_err(|e| LoadError::new(format!("cannot read the stored model: {e}"), true))?;
    let mut result = Err(truncated(0));
    while let Ok(Some(chunk)) = reader.next_chunk().await {
        match push(&mut stream, &chunk) {
            Ok(Some(header)) => {
                result = Ok(Probed { header, bytes });
                break;
            }
            Ok(None) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    reader.close();
    result
}

/// Whether the worker may fetch from `url`'s origin: its own, or one the user allowed (the
/// Content-Security-Policy the worker runs under says the same; this says it in words).
pub async fn check_origin(url: &str) -> Result<String, LoadError> {
    let absolute = js::absolute_url(url).map_err(|e| LoadError::new(e, false))?;
    if !matches!(absolute.protocol().as_str(), "https:" | "http:") {
        return Err(LoadError::new(
            format!("{url:?} is not an http(s) address"),
            false,
        ));
    }
    let origin = absolute.origin();
    if origin != js::own_origin() && !js::allowed_origins().await.contains(&origin) {
        return Err(LoadError::new(
            format!(
                "this page fetches models only from its own origin and the origins you allow: \
                 allow {origin} under \"Allowed origins\" first"
            ),
            false,
        ));
    }
    Ok(absolute.href())
}

/// The header of a GGUF at `url`, with Range requests that grow until it is whole (a server
/// that ignores Range sends the whole file: its first bytes are read and the rest refused).
pub async fn from_url(url: &str, stop: &Cell<bool>) -> Result<Probed, LoadError> {
    let max = Limits::default().max_header_bytes;
    let mut stream: Option<GgufStream> = None;
    let mut total: Option<u64> = None;
    let (mut have, mut span) = (0u64, FIRST_SPAN);
    loop {
        if stop.get() {
            return Err(stopped());
        }
        let response = js::fetch_span(url, have, have + span).await.map_err(|e| {
            LoadError::new(
                format!("cannot fetch {url} ({e}); is the address right, and does its server allow this page (CORS)?"),
                true,
            )
        })?;
        let whole = match response.status() {
            206 => false,
            200 if have == 0 => true,
            200 => {
                return Err(LoadError::new(
                    "the server ignored a Range request after honouring one",
                    true,
                ))
            }
            status => {
                return Err(LoadError::new(
                    format!("the server answered {status} for {url}"),
                    status >= 500,
                ))
            }
        };
        total = total
            .or_else(|| js::range_total(&response))
            .or_else(|| whole.then(|| js::content_length(&response)).flatten());
        let stream = stream.get_or_insert_with(|| GgufStream::new(Limits::default(), total));
        let body = response
            .body()
            .ok_or_else(|| LoadError::new("the response has no body", true))?;
        let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
        let before = have;
        loop {
            let chunk = js::read_chunk(&reader)
                .await
                .map_err(|e| LoadError::new(format!("the download stopped ({e})"), true))?;
            let Some(chunk) = chunk else { break };
            have += chunk.len() as u64;
            let header = push(stream, &chunk);
            if !matches!(header, Ok(None)) || stop.get() {
                js::cancel(&reader);
            }
            if let Some(header) = header? {
                // Without a readable size, the header's own: its last tensor ends the file.
                let bytes = total.unwrap_or_else(|| header.file_len());
                return Ok(Probed { header, bytes });
            }
            if stop.get() {
                return Err(stopped());
            }
        }
        if whole || have == before || total.is_some_and(|t| have >= t) {
            return Err(truncated(have));
        }
        if have > max {
            return Err(header_error(format!(
                "its header is larger than {} MB",
                max >> 20
            )));
        }
        span *= 2;
    }
}

/// What a header means here.
pub struct Assessment {
    pub summary: ModelSummary,
    pub plan: Option<Plan>,
    /// The tier it runs on (`None`: it does not run here).
    pub tier: Option<Tier>,
    /// The context the page gives it.
    pub context: usize,
    pub verdict: String,
}

/// Which tier runs the model (the user's choice first, WebGPU before the CPU), with how long a
/// context, and why, in words.
pub fn assess(header: &GgufHeader, limits: &DeviceLimits, choice: TierChoice) -> Assessment {
    let summary = ModelSummary::from_header(header);
    let cannot_run = |summary: ModelSummary, plan: Option<Plan>, why: String| Assessment {
        verdict: format!("Glassbox cannot run this model: {why}."),
        summary,
        plan,
        tier: None,
        context: 0,
    };
    let Some(config) = summary.config.clone() else {
        let why = summary.problem.clone().unwrap_or_default();
        return cannot_run(summary, None, why);
    };
    let tokenizer_problem = Tokenizer::from_gguf(header)
        .err()
        .map(|e| format!("its tokenizer cannot be read ({e})"));
    let context = PAGE_CONTEXT.min(config.context_len);
    let plan = plan(header, &config, context, limits);
    let fits = |tier: Tier| {
        plan.tiers
            .iter()
            .find(|t| t.tier == tier)
            .and_then(|t| t.max_context)
            .filter(|&max| max > 0)
    };
    let candidates: &[Tier] = match choice {
        TierChoice::Cpu => &[Tier::Cpu],
        TierChoice::Auto | TierChoice::WebGpu => &[Tier::WebGpu, Tier::Cpu],
    };
    let chosen = candidates
        .iter()
        .find_map(|&tier| fits(tier).map(|max| (tier, max.min(context))));
    let why = |tier: Tier| {
        plan.tiers
            .iter()
            .find(|t| t.tier == tier)
            .map(|t| format!("{}: {}", tier.label(), t.verdict))
            .unwrap_or_default()
    };
    let verdict = match chosen {
        Some((tier, ctx)) => {
            let needs = plan
                .tiers
                .iter()
                .find(|t| t.tier == tier)
                .map(|t| t.needs)
                .expect("the chosen tier is planned");
            let mut text = format!(
                "Runs on {} with a {ctx}-token context (weights {:.0} MB, KV cache {:.0} MB, \
                 scratch {:.0} MB at {context} tokens).",
                match tier {
                    Tier::WebGpu => "WebGPU",
                    Tier::Cpu => "the CPU (wasm)",
                },
                needs.weights as f64 / 1e6,
                needs.kv_cache as f64 / 1e6,
                needs.scratch as f64 / 1e6,
            );
            if tier == Tier::Cpu && choice != TierChoice::Cpu {
                text.push_str(&format!(" Not on WebGPU: {}.", why(Tier::WebGpu)));
            }
            if ctx < context {
                text.push_str(&format!(" A longer context does not fit: {}.", why(tier)));
            }
            (tier, ctx, text)
        }
        None => {
            let mut reasons: Vec<String> = candidates.iter().map(|&t| why(t)).collect();
            reasons.extend(tokenizer_problem);
            return Assessment {
                verdict: format!(
                    "Does not fit in this browser: {}. Nothing was downloaded.",
                    reasons.join("; ")
                ),
                summary,
                plan: Some(plan),
                tier: None,
                context: 0,
            };
        }
    };
    if let Some(why) = tokenizer_problem {
        return cannot_run(summary, Some(plan), why);
    }
    let (tier, context, mut verdict) = verdict;
    if plan.storage_fits == Some(false) {
        verdict.push_str(
            " The browser's free storage cannot keep it: it would be fetched again on every visit.",
        );
    }
    Assessment {
        summary,
        plan: Some(plan),
        tier: Some(tier),
        context,
        verdict,
    }
}

/// The context the page gives the model on `tier` (its own, capped at the page's and at what
/// fits), or why it does not fit there; and the context it would have without a device limit.
pub fn context_on(
    header: &GgufHeader,
    limits: &DeviceLimits,
    tier: Tier,
) -> (Result<usize, String>, usize) {
    let Some(config) = ModelSummary::from_header(header).config else {
        return (Err("its header cannot be read".into()), 0);
    };
    let full = PAGE_CONTEXT.min(config.context_len);
    let plan = plan(header, &config, full, limits);
    let fits = match plan.tiers.iter().find(|t| t.tier == tier) {
        Some(t) => match t.max_context {
            Some(0) => Err(t.verdict.clone()),
            Some(max) => Ok(max.min(full)),
            None => Ok(full),
        },
        None => Err(format!("{} is not planned", tier.label())),
    };
    (fits, full)
}

/// What this browser offers, for [`assess`].
pub async fn device_limits(gpu: Option<(u64, u64)>) -> DeviceLimits {
    let storage_free = js::storage_estimate()
        .await
        .map(|(usage, quota)| (quota - usage).max(0.0) as u64);
    DeviceLimits {
        memory: js::device_memory(),
        wasm32: true,
        max_binding: gpu.map(|g| g.0),
        max_buffer: gpu.map(|g| g.1),
        storage_free,
    }
}
