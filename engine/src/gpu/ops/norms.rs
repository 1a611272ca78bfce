//! `rms_norm` (one workgroup per row) and `group_norm` (one invocation per row and group).

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::kernels::meta::{GroupNormMeta, RmsNormMeta};
use crate::gpu::kernels::{grid_1d, KernelId};
use crate::gpu::recording::Arg;

impl GpuBackend {
    pub(in crate::gpu) fn record_rms_norm(
        &self,
        x: &GpuTensor,
        weight: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        let out = self.pool.tensor(x.rows, x.cols);
        let meta = self.recorder.upload_meta(&RmsNormMeta {
            rows: x.rows as u32,
            cols: x.cols as u32,
            eps,
            _pad: 0,
        });
        self.recorder.dispatch(
            KernelId::RmsNorm,
            &[
                Arg::Arena(meta),
                Arg::Buffer(x.buffer()),
                Arg::Buffer(weight.buffer()),
                Arg::Buffer(out.buffer()),
            ],
            (x.rows as u32, 1, 1),
        );
        Ok(out)
    }

    pub(in crate::gpu) fn record_group_norm(
        &self,
        x: &GpuTensor,
        groups: usize,
        weight: &GpuTensor,
        bias: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        let out = self.pool.tensor(x.rows, x.cols);
        let meta = self.recorder.upload_meta(&GroupNormMeta {
            rows: x.rows as u32,
            cols: x.cols as u32,
            groups: groups as u32,
            eps,
        });
        self.recorder.dispatch(
            KernelId::GroupNorm,
            &[
                Arg::Arena(meta),
                Arg::Buffer(x.buffer()),
                Arg::Buffer(weight.buffer()),
                Arg::Buffer(bias.buffer()),
                Arg::Buffer(out.buffer()),
            ],
            grid_1d(self.context(), (x.rows * groups) as u32, 64),
        );
        Ok(out)
    }
}
