//! `add`, `scale`, `silu_mul`, `gelu`, `gelu_mul` and `column_affine`: one invocation per
//! element; and the 8-bit rounding of activations the Lab's outlier view runs.

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::kernels::meta::{ActivationQuantMeta, ElementwiseMeta};
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

impl GpuBackend {
    /// [`crate::backend::Backend::quantize_activations`]: the outlier columns first, then each
    /// row's blocks.
    pub(in crate::gpu) fn record_quantize_activations(
        &self,
        x: &GpuTensor,
        keep_outliers_above: Option<f32>,
    ) -> GpuTensor {
        let out = self.pool.tensor(x.rows, x.cols);
        let outlier = self.pool.tensor(1, x.cols);
        let meta = self.recorder.upload_meta(&ActivationQuantMeta {
            rows: x.rows as u32,
            cols: x.cols as u32,
            threshold: keep_outliers_above.unwrap_or(f32::INFINITY),
            keep_outliers: u32::from(keep_outliers_above.is_some()),
        });
        let args = [
            Arg::Arena(meta),
            Arg::Buffer(x.buffer()),
            Arg::Buffer(outlier.buffer()),
            Arg::Buffer(out.buffer()),
        ];
        self.recorder.dispatch(
            KernelId::OutlierColumns,
            &args,
            ((x.cols as u32).div_ceil(256), 1, 1),
        );
        self.recorder.dispatch(
            KernelId::QuantizeBlocks,
            &args,
            ((x.cols as u32).div_ceil(32).div_ceil(256), x.rows as u32, 1),
        );
        out
    }
}
