//! Our WGSL kernels. Each family has its own `.wgsl` file (included from one place, here), a
//! `#[repr(C)]` mirror of its uniform `Meta` struct, and a CPU twin that the tests compare with.

pub mod elementwise;

use super::GpuContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compiled pipelines, created on first use and cached by (shader, entry point).
#[derive(Default, Clone)]
pub struct PipelineCache {
    pipelines: Arc<Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub fn get(
        &self,
        ctx: &GpuContext,
        shader_name: &'static str,
        source: &'static str,
        entry_point: &'static str,
    ) -> wgpu::ComputePipeline {
        let mut pipelines = self
            .pipelines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pipelines
            .entry((shader_name, entry_point))
            .or_insert_with(|| {
                let module = ctx
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader_name),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                ctx.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry_point),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry_point),
                        compilation_options: Default::default(),
                        cache: None,
                    })
            })
            .clone()
    }
}

/// Records one dispatch: binds `buffers` in order to group 0 (bindings 0, 1, …) and runs
/// `workgroups` workgroups.
pub fn dispatch(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[&wgpu::Buffer],
    workgroups: (u32, u32, u32),
) {
    let layout = pipeline.get_bind_group_layout(0);
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, buffer)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &entries,
    });
    let mut pass = encoder.begin_compute_pass(&Default::default());
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, &bind_group, &[]);
    pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
}

/// A uniform buffer holding one `Meta` struct.
pub fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, meta: &T) -> wgpu::Buffer {
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("meta"),
        size: std::mem::size_of::<T>().max(16) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buffer, 0, bytemuck::bytes_of(meta));
    buffer
}
