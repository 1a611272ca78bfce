//! `glassbox info`: what a GGUF is (from its header alone) and whether it runs here, on which
//! tier and with how long a context: the same summary and budget the page shows before it
//! downloads a model.

use crate::commands::read_header;
use crate::ModelArgs;
use engine::runtime::budget::{plan, DeviceLimits, ModelSummary, Plan};
use serde_json::json;

pub fn run(model: &ModelArgs, context: Option<usize>, json_out: bool) -> Result<(), String> {
    let path = model.path()?;
    let header = read_header(&path)?;
    let summary = ModelSummary::from_header(&header);
    let limits = DeviceLimits {
        memory: machine_memory(),
        wasm32: false,
        max_binding: None,
        max_buffer: None,
        storage_free: None,
    };
    let limits = with_webgpu_limits(limits);
    let plan = summary.config.as_ref().map(|config| {
        plan(
            &header,
            config,
            context.unwrap_or(config.context_len),
            &limits,
        )
    });
    if json_out {
        let value = json!({"file": path.display().to_string(), "summary": summary, "plan": plan});
        println!(
            "{}",
            serde_json::to_string(&value).map_err(|e| e.to_string())?
        );
    } else {
        print_summary(&summary, plan.as_ref());
    }
    match &summary.problem {
        Some(problem) => Err(format!("{}: {problem}", path.display())),
        None => Ok(()),
    }
}

fn print_summary(s: &ModelSummary, plan: Option<&Plan>) {
    let types: Vec<String> = s.types.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
    println!("name:          {}", s.name);
    println!("architecture:  {}", s.architecture);
    println!(
        "parameters:    {:.1} M in {:.1} MB",
        s.parameters as f64 / 1e6,
        s.file_bytes as f64 / 1e6
    );
    println!("tensor types:  {}", types.join(", "));
    println!(
        "license:       {}",
        s.license.as_deref().unwrap_or("not stated in the file")
    );
    println!(
        "chat template: {}",
        if s.has_chat_template {
            "yes"
        } else {
            "no (completion mode)"
        }
    );
    if let Some(c) = &s.config {
        let local = c.local_layers.iter().filter(|&&l| l).count();
        println!(
            "shape:         {} layers × {} heads ({} key/value) of {}, width {}, FFN {}, vocabulary {}",
            c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.d_model, c.ffn_dim, c.vocab_size
        );
        println!("context:       {} tokens", c.context_len);
        if let Some(window) = c.sliding_window {
            println!(
                "local layers:  {local} of {} with a {window}-token window",
                c.n_layers
            );
        }
    }
    if let Some(plan) = plan {
        println!("at {} tokens of context:", plan.context);
        for t in &plan.tiers {
            println!(
                "  {:<7} {} (weights {:.0} MB, KV cache {:.0} MB, scratch {:.0} MB)",
                t.tier.label(),
                t.verdict,
                t.needs.weights as f64 / 1e6,
                t.needs.kv_cache as f64 / 1e6,
                t.needs.scratch as f64 / 1e6
            );
        }
    }
}

/// The machine's memory (Linux: MemTotal).
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The native WebGPU adapter's buffer limits, where one exists.
fn with_webgpu_limits(limits: DeviceLimits) -> DeviceLimits {
    match pollster::block_on(engine::gpu::GpuContext::new()) {
        Ok(ctx) => DeviceLimits {
            max_binding: Some(ctx.limits.max_storage_buffer_binding_size),
            max_buffer: Some(ctx.limits.max_buffer_size),
            ..limits
        },
        Err(_) => limits,
    }
}
