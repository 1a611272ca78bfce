//! Our WGSL kernels: the registry of families (one `.wgsl` file each, included here) and of
//! kernels (an entry point of a family, with its bindings), and the pipelines compiled from
//! them. Each `Meta` uniform is mirrored by a `#[repr(C)]` struct in [`meta`]; each kernel has a
//! CPU twin that `tests/gpu_kernels.rs` compares it with.
//!
//! Pipelines are created once and cached; bind group layouts are explicit (auto layouts drop
//! bindings an entry point does not use, which would make the binding list depend on the
//! entry point).

pub mod meta;

use super::context::GpuContext;
use crate::gguf::GgmlType;
use std::collections::HashMap;
use std::rc::Rc;

const QUANT_BLOCKS: &str = include_str!("quant_blocks.wgsl");

/// A kernel family: one WGSL file. Its name labels shader modules and per-family timings
/// (`glassbox bench --backend webgpu` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Embedding,
    Matmul,
    RmsNorm,
    Rope,
    KvAppend,
    KvKeep,
    ActivationQuant,
    AttentionScores,
    Softmax,
    AttentionValues,
    Select,
    GroupNorm,
    Retention,
}

impl Family {
    pub const ALL: [Family; 14] = [
        Family::Elementwise,
        Family::Embedding,
        Family::Matmul,
        Family::RmsNorm,
        Family::Rope,
        Family::KvAppend,
        Family::KvKeep,
        Family::ActivationQuant,
        Family::AttentionScores,
        Family::Softmax,
        Family::AttentionValues,
        Family::Select,
        Family::GroupNorm,
        Family::Retention,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Elementwise => "elementwise",
            Family::Embedding => "embedding",
            Family::Matmul => "matmul",
            Family::RmsNorm => "rms_norm",
            Family::Rope => "rope",
            Family::KvAppend => "kv_append",
            Family::KvKeep => "kv_keep",
            Family::ActivationQuant => "activation_quant",
            Family::AttentionScores => "attention_scores",
            Family::Softmax => "softmax",
            Family::AttentionValues => "attention_values",
            Family::Select => "select",
            Family::GroupNorm => "group_norm",
            Family::Retention => "retention",
        }
    }

    /// The WGSL file, without the block-format sections a weight-reading kernel gets spliced in.
    pub fn source(self) -> &'static str {
        match self {
            Family::Elementwise => include_str!("elementwise.wgsl"),
            Family::Embedding => include_str!("embedding.wgsl"),
            Family::Matmul => include_str!("matmul.wgsl"),
            Family::RmsNorm => include_str!("rms_norm.wgsl"),
            Family::Rope => include_str!("rope.wgsl"),
            Family::KvAppend => include_str!("kv_append.wgsl"),
            Family::KvKeep => include_str!("kv_keep.wgsl"),
            Family::ActivationQuant => include_str!("activation_quant.wgsl"),
            Family::AttentionScores => include_str!("attention_scores.wgsl"),
            Family::Softmax => include_str!("softmax.wgsl"),
            Family::AttentionValues => include_str!("attention_values.wgsl"),
            Family::Select => include_str!("select.wgsl"),
            Family::GroupNorm => include_str!("group_norm.wgsl"),
            Family::Retention => include_str!("retention.wgsl"),
        }
    }
}

/// How a kernel uses binding `i` of group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

use Binding::{Read, ReadWrite, Uniform};

/// One kernel: an entry point of a family. Kernels that read weights carry the block format
/// spliced in from `quant_blocks.wgsl`, so each format is its own pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelId {
    Add,
    Scale,
    SiluMul,
    Gelu,
    GeluMul,
    ColumnAffine,
    Gather(GgmlType),
    RmsNorm,
    GroupNorm,
    Matvec(GgmlType),
    MatvecRows(GgmlType),
    MatmulTiled(GgmlType),
    Rope,
    KvAppend,
    KvKeep,
    OutlierColumns,
    QuantizeBlocks,
    AttentionScores,
    Softmax,
    AttentionValues,
    Penalize,
    TopOne,
    RetentionScores,
    RetentionValues,
    RetentionRecurrent,
    RetentionChunkwise,
}

impl KernelId {
    pub fn family(self) -> Family {
        match self {
            KernelId::Add
            | KernelId::Scale
            | KernelId::SiluMul
            | KernelId::Gelu
            | KernelId::GeluMul
            | KernelId::ColumnAffine => Family::Elementwise,
            KernelId::Gather(_) => Family::Embedding,
            KernelId::RmsNorm => Family::RmsNorm,
            KernelId::GroupNorm => Family::GroupNorm,
            KernelId::Matvec(_) | KernelId::MatvecRows(_) | KernelId::MatmulTiled(_) => {
                Family::Matmul
            }
            KernelId::Rope => Family::Rope,
            KernelId::KvAppend => Family::KvAppend,
            KernelId::KvKeep => Family::KvKeep,
            KernelId::OutlierColumns | KernelId::QuantizeBlocks => Family::ActivationQuant,
            KernelId::AttentionScores => Family::AttentionScores,
            KernelId::Softmax => Family::Softmax,
            KernelId::AttentionValues => Family::AttentionValues,
            KernelId::Penalize | KernelId::TopOne => Family::Select,
            KernelId::RetentionScores
            | KernelId::RetentionValues
            | KernelId::RetentionRecurrent
            | KernelId::RetentionChunkwise => Family::Retention,
        }
    }

    pub fn entry(self) -> &'static str {
        match self {
            KernelId::Add => "add",
            KernelId::Scale => "scale",
            KernelId::SiluMul => "silu_mul",
            KernelId::Gelu => "gelu",
            KernelId::GeluMul => "gelu_mul",
            KernelId::ColumnAffine => "column_affine",
            KernelId::Gather(_) => "gather",
            KernelId::RmsNorm => "rms_norm",
            KernelId::GroupNorm => "group_norm",
            KernelId::Matvec(_) => "matvec",
            KernelId::MatvecRows(_) => "matvec_rows",
            KernelId::MatmulTiled(_) => "matmul_tiled",
            KernelId::Rope => "rope",
            KernelId::KvAppend => "kv_append",
            KernelId::KvKeep => "kv_keep",
            KernelId::OutlierColumns => "outlier_columns",
            KernelId::QuantizeBlocks => "quantize_blocks",
            KernelId::AttentionScores => "scores_main",
            KernelId::Softmax => "softmax_rows",
            KernelId::AttentionValues => "values_main",
            KernelId::Penalize => "penalize",
            KernelId::TopOne => "top_one",
            KernelId::RetentionScores => "parallel_scores",
            KernelId::RetentionValues => "parallel_values",
            KernelId::RetentionRecurrent => "recurrent",
            KernelId::RetentionChunkwise => "chunkwise",
        }
    }

    /// The binding list: every entry point of a family declares the whole file's bindings.
    pub fn bindings(self) -> &'static [Binding] {
        match self.family() {
            Family::Elementwise
            | Family::Embedding
            | Family::Matmul
            | Family::RmsNorm
            | Family::Rope
            | Family::AttentionValues => &[Uniform, Read, Read, ReadWrite],
            Family::ActivationQuant => &[Uniform, Read, ReadWrite, ReadWrite],
            Family::GroupNorm | Family::AttentionScores => &[Uniform, Read, Read, Read, ReadWrite],
            Family::KvAppend => &[Uniform, Read, Read, ReadWrite, ReadWrite],
            Family::KvKeep => &[Uniform, Read, Read, Read, Read, ReadWrite, ReadWrite],
            Family::Softmax => &[Uniform, ReadWrite],
            Family::Select => &[Uniform, Read, ReadWrite, ReadWrite],
            Family::Retention => &[Uniform, Read, Read, Read, Read, ReadWrite, Read],
        }
    }

    /// For kernels that read weights: their block format.
    pub fn weights(self) -> Option<GgmlType> {
        match self {
            KernelId::Gather(ty)
            | KernelId::Matvec(ty)
            | KernelId::MatvecRows(ty)
            | KernelId::MatmulTiled(ty) => Some(ty),
            _ => None,
        }
    }

    /// The WGSL to compile: the family's file, after the block-format sections it reads.
    fn source(self) -> String {
        let family = self.family();
        match self.weights() {
            None => family.source().to_string(),
            Some(ty) => format!(
                "{}\n{}",
                quant_sections(ty, family == Family::Matmul),
                family.source()
            ),
        }
    }
}

/// The sections of `quant_blocks.wgsl` for one block format (with the `*_dot` helpers for the
/// matmul kernels). A section may name several formats (`//#if Q4_K Q5_K`).
pub fn quant_sections(ty: GgmlType, with_dot: bool) -> String {
    let tag = ty.name();
    let dot_tag = format!("{tag}_dot");
    let mut out = String::new();
    let mut keep = true; // the file's preamble
    for line in QUANT_BLOCKS.lines() {
        if let Some(sections) = line.strip_prefix("//#if ") {
            keep = sections
                .split_whitespace()
                .any(|section| section == tag || (with_dot && section == dot_tag));
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
    pub kernel: KernelId,
}

/// Compiled pipelines, created on first use.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: std::cell::RefCell<HashMap<KernelId, Rc<Pipeline>>>,
}

impl PipelineCache {
    pub fn get(&self, ctx: &GpuContext, kernel: KernelId) -> Rc<Pipeline> {
        if let Some(p) = self.pipelines.borrow().get(&kernel) {
            return Rc::clone(p);
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings()
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
                label: Some(kernel.entry()),
                entries: &entries,
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry()),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.family().name()),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            });
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry()),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every weight type the GGUF reader accepts: each has WGSL.
    const WEIGHT_TYPES: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    /// Every kernel, weight-reading ones once per block format.
    fn all_kernels() -> Vec<KernelId> {
        let mut all = vec![
            KernelId::Add,
            KernelId::Scale,
            KernelId::SiluMul,
            KernelId::Gelu,
            KernelId::GeluMul,
            KernelId::ColumnAffine,
            KernelId::RmsNorm,
            KernelId::GroupNorm,
            KernelId::Rope,
            KernelId::KvAppend,
            KernelId::KvKeep,
            KernelId::OutlierColumns,
            KernelId::QuantizeBlocks,
            KernelId::AttentionScores,
            KernelId::Softmax,
            KernelId::AttentionValues,
            KernelId::Penalize,
            KernelId::TopOne,
            KernelId::RetentionScores,
            KernelId::RetentionValues,
            KernelId::RetentionRecurrent,
            KernelId::RetentionChunkwise,
        ];
        for ty in WEIGHT_TYPES {
            all.extend([
                KernelId::Gather(ty),
                KernelId::Matvec(ty),
                KernelId::MatvecRows(ty),
                KernelId::MatmulTiled(ty),
            ]);
        }
        all
    }

    /// The `@group(0) @binding(i)` declarations of a WGSL file, in binding order.
    fn declared_bindings(source: &str) -> Vec<Binding> {
        let mut found: Vec<(u32, Binding)> = source
            .lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("@group(0) @binding(")?;
                let (index, rest) = rest.split_once(')')?;
                let space = rest.split_once("var<")?.1.split_once('>')?.0;
                let binding = match space.replace(' ', "").as_str() {
                    "uniform" => Binding::Uniform,
                    "storage,read" => Binding::Read,
                    "storage,read_write" => Binding::ReadWrite,
                    other => panic!("unknown address space {other}"),
                };
                Some((index.parse().ok()?, binding))
            })
            .collect();
        found.sort_by_key(|(i, _)| *i);
        found.iter().enumerate().for_each(|(i, (index, _))| {
            assert_eq!(*index as usize, i, "bindings are numbered 0, 1, …");
        });
        found.into_iter().map(|(_, b)| b).collect()
    }

    #[test]
    fn binding_lists_match_the_wgsl_declarations() {
        for kernel in all_kernels() {
            let declared = declared_bindings(kernel.family().source());
            assert_eq!(kernel.bindings(), declared, "{kernel:?}");
        }
    }

    #[test]
    fn entry_points_exist_in_their_family() {
        for kernel in all_kernels() {
            let source = kernel.source();
            let signature = format!("fn {}(", kernel.entry());
            assert!(
                source.lines().any(|line| line.starts_with(&signature)),
                "{kernel:?}: no `{signature}` in {}.wgsl",
                kernel.family().name()
            );
        }
    }

    /// Each format's sections define what the kernels call, once: `weight` (and, with the
    /// `*_dot` sections, `unit_dot` and its two constants), whatever the order of the file.
    #[test]
    fn every_weight_type_has_its_sections_once() {
        for ty in WEIGHT_TYPES {
            for (with_dot, names) in [
                (false, &["fn weight("][..]),
                (
                    true,
                    &[
                        "fn weight(",
                        "fn unit_dot(",
                        "const UNITS_PER_BLOCK:",
                        "const COLS_PER_UNIT_BLOCK:",
                    ][..],
                ),
            ] {
                let source = quant_sections(ty, with_dot);
                for name in names {
                    let count = source.lines().filter(|l| l.starts_with(name)).count();
                    assert_eq!(count, 1, "{ty} (dot: {with_dot}): {count} × `{name}`");
                }
            }
        }
    }

    #[test]
    fn family_names_are_distinct() {
        let mut names: Vec<_> = Family::ALL.iter().map(|f| f.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Family::ALL.len());
    }
}
