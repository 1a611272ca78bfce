//! Rotary position embedding: angles computed on the CPU per position, uploaded with the
//! dispatch; one invocation per rotated pair.

use crate::backend::{rope_angles, RopeStyle};
use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::kernels::meta::RopeMeta;
use crate::gpu::kernels::KernelId;
use crate::gpu::recording::Arg;

impl GpuBackend {
    pub(in crate::gpu) fn record_rope(
        &self,
        x: &GpuTensor,
        head_dim: usize,
        positions: &[u32],
        base: f32,
        style: RopeStyle,
    ) -> Result<GpuTensor> {
        let out = self.pool.tensor(x.rows, x.cols);
        let angles = rope_angles(positions, head_dim, base);
        let angles = self.recorder.upload(bytemuck::cast_slice(&angles));
        let meta = self.recorder.upload_meta(&RopeMeta {
            tokens: x.rows as u32,
            features: x.cols as u32,
            head_dim: head_dim as u32,
            halves: u32::from(style == RopeStyle::Halves),
        });
        self.recorder.dispatch(
            KernelId::Rope,
            &[
                Arg::Arena(meta),
                Arg::Buffer(x.buffer()),
                Arg::Arena(angles),
                Arg::Buffer(out.buffer()),
            ],
            ((x.cols as u32 / 2).div_ceil(256), x.rows as u32, 1),
        );
        Ok(out)
    }
}
