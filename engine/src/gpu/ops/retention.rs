//! Multi-head retention (RetNet) in its three forms: parallel (a scores pass, then a values
//! pass over them), recurrent and chunkwise (one invocation per feature, walking the tokens).

use crate::backend::RetentionForm;
use crate::error::{Error, Result};
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::kernels::meta::RetentionMeta;
use crate::gpu::kernels::{grid_1d, KernelId};
use crate::gpu::recording::Arg;

impl GpuBackend {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::gpu) fn record_retention(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        head_dim: usize,
        decays: &[f32],
        form: RetentionForm,
        want_scores: bool,
    ) -> Result<(GpuTensor, Option<GpuTensor>)> {
        let (t, width) = (q.rows, q.cols);
        // The recurrent and chunkwise kernels keep a head's state column in private memory.
        if head_dim > 64 {
            return Err(Error::InvalidRequest(format!(
                "retention on WebGPU: heads of {head_dim} (at most 64)"
            )));
        }
        let chunk = match form {
            RetentionForm::Chunkwise(chunk) => chunk.max(1),
            _ => t,
        };
        let meta = self.recorder.upload_meta(&RetentionMeta {
            t: t as u32,
            heads: decays.len() as u32,
            head_dim: head_dim as u32,
            chunk: chunk as u32,
            scale: 1.0 / (head_dim as f32).sqrt(),
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        });
        let decays = self.recorder.upload(bytemuck::cast_slice(decays));
        let heads = (width / head_dim.max(1)) as u32;
        let mut scores = None;
        if want_scores || form == RetentionForm::Parallel {
            let s = self.pool.tensor(heads as usize * t, t);
            self.context()
                .check_binding_size("the retention scores", (s.rows * s.cols * 4) as u64)?;
            self.recorder.dispatch(
                KernelId::RetentionScores,
                &[
                    Arg::Arena(meta),
                    Arg::Buffer(q.buffer()),
                    Arg::Buffer(k.buffer()),
                    Arg::Buffer(v.buffer()),
                    Arg::Arena(decays),
                    Arg::Buffer(s.buffer()),
                    Arg::Buffer(q.buffer()),
                ],
                ((t as u32).div_ceil(64), t as u32, heads),
            );
            scores = Some(s);
        }
        let out = self.pool.tensor(t, width);
        // Binding 6 is read only by `parallel_values`; the others get any buffer there.
        let (kernel, extra, groups) = match form {
            RetentionForm::Parallel => (
                KernelId::RetentionValues,
                scores.as_ref().map_or(q.buffer(), |s| s.buffer()),
                grid_1d(self.context(), (t * width) as u32, 64),
            ),
            RetentionForm::Recurrent => (
                KernelId::RetentionRecurrent,
                q.buffer(),
                ((width as u32).div_ceil(64), 1, 1),
            ),
            RetentionForm::Chunkwise(_) => (
                KernelId::RetentionChunkwise,
                q.buffer(),
                ((width as u32).div_ceil(64), 1, 1),
            ),
        };
        self.recorder.dispatch(
            kernel,
            &[
                Arg::Arena(meta),
                Arg::Buffer(q.buffer()),
                Arg::Buffer(k.buffer()),
                Arg::Buffer(v.buffer()),
                Arg::Arena(decays),
                Arg::Buffer(out.buffer()),
                Arg::Buffer(extra),
            ],
            groups,
        );
        Ok((out, if want_scores { scores } else { None }))
    }
}
