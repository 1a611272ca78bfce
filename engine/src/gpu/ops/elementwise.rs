//! `add`, `scale`, `silu_mul`, `gelu`, `gelu_mul` and `column_affine`: one invocation per
//! element.

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::kernels::meta::ElementwiseMeta;
use crate::gpu::kernels::{grid_1d, KernelId};
use crate::gpu::recording::Arg;

impl GpuBackend {
    /// `kernel` (an elementwise one) over `a` and `b`, which `gelu` and `scale` ignore;
    /// `factor` is `scale`'s.
    pub(in crate::gpu) fn record_elementwise(
        &self,
        kernel: KernelId,
        a: &GpuTensor,
        b: &GpuTensor,
        factor: f32,
    ) -> Result<GpuTensor> {
        let n = a.rows * a.cols;
        let out = self.pool.tensor(a.rows, a.cols);
        let meta = self.recorder.upload_meta(&ElementwiseMeta {
            n: n as u32,
            factor,
            cols: a.cols as u32,
            _pad: 0,
        });
        self.recorder.dispatch(
            kernel,
            &[
                Arg::Arena(meta),
                Arg::Buffer(a.buffer()),
                Arg::Buffer(b.buffer()),
                Arg::Buffer(out.buffer()),
            ],
            grid_1d(self.context(), n as u32, 256),
        );
        Ok(out)
    }
}
