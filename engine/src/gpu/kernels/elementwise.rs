//! Element-wise kernels (`elementwise.wgsl`) and their CPU twins.

use super::{dispatch, uniform, PipelineCache};
use crate::gpu::GpuContext;

const SOURCE: &str = include_str!("elementwise.wgsl");
const WORKGROUP: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Meta {
    n: u32,
    _pad: [u32; 3],
}

/// Workgroup counts for `n` elements, folded into 2-D past the per-dimension limit.
pub fn grid_1d(ctx: &GpuContext, n: u32) -> (u32, u32, u32) {
    let groups = n.div_ceil(WORKGROUP).max(1);
    let max_x = ctx.limits.max_compute_workgroups_per_dimension.max(1);
    if groups <= max_x {
        (groups, 1, 1)
    } else {
        (max_x, groups.div_ceil(max_x), 1)
    }
}

/// Records `out = a + b` over `n` f32 elements.
pub fn add(
    ctx: &GpuContext,
    cache: &PipelineCache,
    encoder: &mut wgpu::CommandEncoder,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n: u32,
) {
    let pipeline = cache.get(ctx, "elementwise.wgsl", SOURCE, "add");
    let meta = uniform(ctx, &Meta { n, _pad: [0; 3] });
    dispatch(
        ctx,
        encoder,
        &pipeline,
        &[&meta, a, b, out],
        grid_1d(ctx, n),
    );
}

/// CPU twin of [`add`].
pub fn add_cpu(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}
