//! `embed`: rows of an embedding table, decoded from its block format.

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::{GpuMatrix, GpuTensor};
use crate::gpu::kernels::meta::EmbeddingMeta;
use crate::gpu::kernels::KernelId;
use crate::gpu::recording::Arg;

impl GpuBackend {
    pub(in crate::gpu) fn record_embed(&self, table: &GpuMatrix, ids: &[u32]) -> Result<GpuTensor> {
        let out = self.pool.tensor(ids.len(), table.cols);
        let ids_slice = self.recorder.upload(bytemuck::cast_slice(ids));
        // Every id falls in exactly one part, so the parts' dispatches fill `out` between them.
        for part in &table.parts {
            let meta = self.recorder.upload_meta(&EmbeddingMeta {
                tokens: ids.len() as u32,
                cols: table.cols as u32,
                row_words: table.row_words as u32,
                first_row: part.first_row as u32,
                part_rows: part.rows as u32,
                _pad0: 0,
                _pad1: 0,
                _pad2: 0,
            });
            self.recorder.dispatch(
                KernelId::Gather(table.ty),
                &[
                    Arg::Arena(meta),
                    Arg::Arena(ids_slice),
                    Arg::Buffer(&part.buffer),
                    Arg::Buffer(out.buffer()),
                ],
                ((table.cols as u32).div_ceil(256), out.rows as u32, 1),
            );
        }
        Ok(out)
    }
}
