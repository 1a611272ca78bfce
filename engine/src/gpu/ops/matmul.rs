//! `x · Wᵀ` for one weight matrix, in the kernel shape that suits the adapter and the number
//! of tokens.

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::{GpuMatrix, GpuTensor, MatrixPart};
use crate::gpu::kernels::meta::MatmulMeta;
use crate::gpu::kernels::KernelId;
use crate::gpu::recording::Arg;

impl GpuBackend {
    pub(in crate::gpu) fn record_matmul(&self, x: &GpuTensor, w: &GpuMatrix) -> Result<GpuTensor> {
        let out = self.pool.tensor(x.rows, w.rows);
        for part in &w.parts {
            self.record_matmul_part(x, w, part, &out);
        }
        Ok(out)
    }

    /// Rows `part` of `x · Wᵀ`, written into their columns of `out`.
    fn record_matmul_part(&self, x: &GpuTensor, w: &GpuMatrix, part: &MatrixPart, out: &GpuTensor) {
        let rows = part.rows as u32;
        let meta = self.recorder.upload_meta(&MatmulMeta {
            rows,
            cols: w.cols as u32,
            tokens: x.rows as u32,
            row_words: w.row_words as u32,
            out_rows: w.rows as u32,
            row_offset: part.first_row as u32,
            _pad0: 0,
            _pad1: 0,
        });
        let args = [
            Arg::Arena(meta),
            Arg::Buffer(&part.buffer),
            Arg::Buffer(x.buffer()),
            Arg::Buffer(out.buffer()),
        ];
        // CPU adapters: one invocation per row streams fastest, barriers are dear.
        if self.cpu_adapter() {
            self.recorder.dispatch(
                KernelId::MatvecRows(w.ty),
                &args,
                (rows.div_ceil(64), x.rows as u32, 1),
            );
        } else if x.rows <= 2 {
            self.recorder.dispatch(
                KernelId::Matvec(w.ty),
                &args,
                (rows.div_ceil(8), x.rows as u32, 1),
            );
        } else {
            self.recorder.dispatch(
                KernelId::MatmulTiled(w.ty),
                &args,
                (rows.div_ceil(32), (x.rows as u32).div_ceil(32), 1),
            );
        }
    }
}
