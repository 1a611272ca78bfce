//! Top-k on the GPU: the last row of logits copied to scratch, penalised, then `k` picks of
//! `top_one`, so only `k` (id, logit) pairs are read back.

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::kernels::meta::SelectMeta;
use crate::gpu::kernels::KernelId;
use crate::gpu::recording::Arg;

impl GpuBackend {
    /// Runs `k` picks of top_one over `logits` (a copy, penalised) and reads them back.
    pub(in crate::gpu) async fn select(
        &self,
        logits: &GpuTensor,
        k: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<(u32, f32)>> {
        let n = logits.cols;
        let row = (logits.rows - 1) * n * 4;
        let scratch = self.pool.tensor(1, n);
        self.recorder.copy(
            logits.buffer(),
            row as u64,
            scratch.buffer(),
            0,
            (n * 4) as u64,
        );
        let k = k.clamp(1, n);
        // (id, logit bits) per pick.
        let picks = self.pool.tensor(k, 2);
        let ids: Vec<u32> = if penalty != 1.0 {
            penalized.to_vec()
        } else {
            Vec::new()
        };
        let id_slice = self
            .recorder
            .upload(bytemuck::cast_slice(if ids.is_empty() {
                &[0u32]
            } else {
                &ids
            }));
        if !ids.is_empty() {
            let meta = self.recorder.upload_meta(&SelectMeta {
                n: n as u32,
                count: ids.len() as u32,
                penalty,
                _pad: 0,
            });
            self.recorder.dispatch(
                KernelId::Penalize,
                &[
                    Arg::Arena(meta),
                    Arg::Arena(id_slice),
                    Arg::Buffer(scratch.buffer()),
                    Arg::Buffer(picks.buffer()),
                ],
                (ids.len().div_ceil(64) as u32, 1, 1),
            );
        }
        for slot in 0..k {
            let meta = self.recorder.upload_meta(&SelectMeta {
                n: n as u32,
                count: slot as u32,
                penalty: 0.0,
                _pad: 0,
            });
            self.recorder.dispatch(
                KernelId::TopOne,
                &[
                    Arg::Arena(meta),
                    Arg::Arena(id_slice),
                    Arg::Buffer(scratch.buffer()),
                    Arg::Buffer(picks.buffer()),
                ],
                (1, 1, 1),
            );
        }
        let raw = self
            .recorder
            .submit_and_read(&[(picks.buffer(), 0, k * 8)])
            .await?
            .remove(0);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&raw);
        Ok(words
            .chunks_exact(2)
            .map(|p| (p[0], f32::from_bits(p[1])))
            .collect())
    }
}
