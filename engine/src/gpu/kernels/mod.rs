//! Our WGSL kernels. Each family has its own `.wgsl` file, included from here; each `Meta`
//! uniform there is mirrored by a `#[repr(C)]` struct in `gpu/backend.rs`; each kernel has a
//! CPU twin that `tests/gpu_kernels.rs` compares it with.
//!
//! Pipelines are created once and cached; bind group layouts are explicit (auto layouts drop
//! bindings an entry point does not use, which would make the binding list depend on the
//! entry point).

use super::GpuContext;
use crate::gguf::GgmlType;
use std::collections::HashMap;
use std::rc::Rc;

pub const ELEMENTWISE: &str = include_str!("elementwise.wgsl");
pub const QUANT_BLOCKS: &str = include_str!("quant_blocks.wgsl");
pub const EMBEDDING: &str = include_str!("embedding.wgsl");
pub const MATMUL: &str = include_str!("matmul.wgsl");
pub const RMS_NORM: &str = include_str!("rms_norm.wgsl");
pub const ROPE: &str = include_str!("rope.wgsl");
pub const KV_APPEND: &str = include_str!("kv_append.wgsl");
pub const ATTENTION_SCORES: &str = include_str!("attention_scores.wgsl");
pub const SOFTMAX: &str = include_str!("softmax.wgsl");
pub const ATTENTION_VALUES: &str = include_str!("attention_values.wgsl");
pub const SELECT: &str = include_str!("select.wgsl");
pub const GROUP_NORM: &str = include_str!("group_norm.wgsl");
pub const RETENTION: &str = include_str!("retention.wgsl");

/// How a kernel uses binding `i` of group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// One kernel: a shader source, an entry point and its bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The family (file), for caching and for per-family timings.
    pub family: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Binding],
    /// For kernels that read weights: the block format spliced in from `quant_blocks.wgsl`.
    pub weights: Option<GgmlType>,
}

impl Kernel {
    fn source(&self) -> String {
        let body = match self.family {
            "elementwise" => ELEMENTWISE,
            "embedding" => EMBEDDING,
            "matmul" => MATMUL,
            "rms_norm" => RMS_NORM,
            "rope" => ROPE,
            "kv_append" => KV_APPEND,
            "attention_scores" => ATTENTION_SCORES,
            "softmax" => SOFTMAX,
            "attention_values" => ATTENTION_VALUES,
            "select" => SELECT,
            "group_norm" => GROUP_NORM,
            "retention" => RETENTION,
            other => panic!("no WGSL source for kernel family {other}"),
        };
        match self.weights {
            None => body.to_string(),
            Some(ty) => format!("{}\n{body}", quant_sections(ty, self.family == "matmul")),
        }
    }
}

/// The sections of `quant_blocks.wgsl` for one block format (with the `*_dot` helpers for the
/// matmul kernels).
pub fn quant_sections(ty: GgmlType, with_dot: bool) -> String {
    let tag = ty.name();
    let dot_tag = format!("{tag}_dot");
    let mut out = String::new();
    let mut keep = true; // the file's preamble
    for line in QUANT_BLOCKS.lines() {
        if let Some(section) = line.strip_prefix("//#if ") {
            keep = section == tag || (with_dot && section == dot_tag);
            continue;
        }
        if line == "//#endif" {
            keep = false;
            continue;
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub kernel: Kernel,
}

/// Compiled pipelines, created on first use.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: std::cell::RefCell<HashMap<Kernel, Rc<Pipeline>>>,
}

impl PipelineCache {
    pub fn get(&self, ctx: &GpuContext, kernel: Kernel) -> Rc<Pipeline> {
        if let Some(p) = self.pipelines.borrow().get(&kernel) {
            return Rc::clone(p);
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings
            .iter()
            .enumerate()
            .map(|(i, binding)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match binding {
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.entry),
                entries: &entries,
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.family),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        let p = Rc::new(Pipeline {
            pipeline,
            layout,
            kernel,
        });
        self.pipelines.borrow_mut().insert(kernel, Rc::clone(&p));
        p
    }
}

/// Uniforms and small inputs (token ids, RoPE angles, masks) of the commands being recorded,
/// in a few big buffers written once before each submit. Each piece gets its own aligned slice,
/// so a later write cannot overwrite what an earlier recorded command will read (which
/// `queue.write_buffer` into a shared buffer would do: it runs before the whole submit).
pub struct UploadArena {
    chunks: Vec<(wgpu::Buffer, Vec<u8>)>,
    current: usize,
    alignment: usize,
}

const ARENA_CHUNK: usize = 1 << 20;

/// A slice of the arena, to bind.
#[derive(Clone, Copy)]
pub struct ArenaSlice {
    pub chunk: usize,
    pub offset: u64,
    pub size: u64,
}

impl UploadArena {
    pub fn new(ctx: &GpuContext) -> Self {
        let alignment = ctx
            .limits
            .min_uniform_buffer_offset_alignment
            .max(ctx.limits.min_storage_buffer_offset_alignment)
            .max(16) as usize;
        UploadArena {
            chunks: Vec::new(),
            current: 0,
            alignment,
        }
    }

    pub fn push(&mut self, ctx: &GpuContext, bytes: &[u8]) -> ArenaSlice {
        let size = bytes.len().max(16).div_ceil(16) * 16;
        let chunk_size = ARENA_CHUNK.max(size);
        loop {
            if self.current == self.chunks.len() {
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload arena"),
                    size: chunk_size as u64,
                    usage: wgpu::BufferUsages::UNIFORM
                        | wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.chunks.push((buffer, Vec::with_capacity(chunk_size)));
            }
            let (buffer, data) = &mut self.chunks[self.current];
            let offset = data.len().div_ceil(self.alignment) * self.alignment;
            if offset + size <= buffer.size() as usize {
                data.resize(offset, 0);
                data.extend_from_slice(bytes);
                data.resize(offset + size, 0);
                return ArenaSlice {
                    chunk: self.current,
                    offset: offset as u64,
                    size: size as u64,
                };
            }
            self.current += 1;
        }
    }

    pub fn buffer(&self, chunk: usize) -> &wgpu::Buffer {
        &self.chunks[chunk].0
    }

    /// Writes what was pushed since the last flush; call right before submitting.
    pub fn flush(&mut self, ctx: &GpuContext) {
        for (buffer, data) in self.chunks.iter_mut().take(self.current + 1) {
            if !data.is_empty() {
                ctx.queue.write_buffer(buffer, 0, data);
                data.clear();
            }
        }
        self.current = 0;
    }
}

/// Workgroup counts for `n` invocations of `per_group`, folded into 2-D past the
/// per-dimension limit (kernels fold y back into x).
pub fn grid_1d(ctx: &GpuContext, n: u32, per_group: u32) -> (u32, u32, u32) {
    let groups = n.div_ceil(per_group).max(1);
    let max_x = ctx.limits.max_compute_workgroups_per_dimension.max(1);
    if groups <= max_x {
        (groups, 1, 1)
    } else {
        (max_x, groups.div_ceil(max_x), 1)
    }
}
