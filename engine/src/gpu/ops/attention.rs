//! Attention against a layer's KV cache: append the new keys and values, score every query
//! against every cached key (causal or under explicit mask bits), softmax each row, weigh the
//! values.

use crate::backend::{AttentionShape, Mask, RopeStyle};
use crate::error::{Error, Result};
use crate::gpu::backend::GpuBackend;
use crate::gpu::buffers::{GpuCache, GpuTensor};
use crate::gpu::kernels::meta::{AttentionMeta, KvAppendMeta, KvKeepMeta, SoftmaxMeta};
use crate::gpu::kernels::KernelId;
use crate::gpu::recording::Arg;

impl GpuBackend {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::gpu) fn record_attention(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        cache: &mut GpuCache,
        shape: AttentionShape,
        mask: &Mask,
        want_probs: bool,
    ) -> Result<(GpuTensor, Option<GpuTensor>)> {
        let t = q.rows;
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = shape;
        let append = self.recorder.upload_meta(&KvAppendMeta {
            tokens: t as u32,
            kv_heads: n_kv_heads as u32,
            head_dim: head_dim as u32,
            capacity: cache.capacity as u32,
            start: cache.len as u32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        });
        self.recorder.dispatch(
            KernelId::KvAppend,
            &[
                Arg::Arena(append),
                Arg::Buffer(k.buffer()),
                Arg::Buffer(v.buffer()),
                Arg::Buffer(&cache.keys),
                Arg::Buffer(&cache.values),
            ],
            (((n_kv_heads * head_dim) as u32).div_ceil(256), t as u32, 1),
        );
        cache.len += t;
        let total = cache.len;
        let probs_bytes = (n_heads * t * total * 4) as u64;
        self.context()
            .check_binding_size("the attention scores", probs_bytes)?;

        let (causal, bits) = match mask {
            Mask::Causal => (1u32, vec![0u32]),
            Mask::Explicit(_) => {
                let rows = mask.to_rows(t, total - t);
                let mut bits = vec![0u32; rows.len().div_ceil(32).max(1)];
                for (i, &visible) in rows.iter().enumerate() {
                    if visible {
                        bits[i / 32] |= 1 << (i % 32);
                    }
                }
                (0, bits)
            }
        };
        let scores = self.pool.tensor(n_heads * t, total);
        // The values pass binds this same uniform.
        let meta = self.recorder.upload_meta(&AttentionMeta {
            tokens: t as u32,
            heads: n_heads as u32,
            kv_heads: n_kv_heads as u32,
            head_dim: head_dim as u32,
            total: total as u32,
            capacity: cache.capacity as u32,
            causal,
            scale: 1.0 / (head_dim as f32).sqrt(),
        });
        let bits = self.recorder.upload(bytemuck::cast_slice(&bits));
        self.recorder.dispatch(
            KernelId::AttentionScores,
            &[
                Arg::Arena(meta),
                Arg::Buffer(q.buffer()),
                Arg::Buffer(&cache.keys),
                Arg::Arena(bits),
                Arg::Buffer(scores.buffer()),
            ],
            ((total as u32).div_ceil(256), t as u32, n_heads as u32),
        );
        let rows = (n_heads * t) as u32;
        if rows > self.context().limits.max_compute_workgroups_per_dimension {
            return Err(Error::InvalidRequest(format!(
                "attention over {t} new tokens needs {rows} softmax rows; feed fewer tokens at a time"
            )));
        }
        let softmax = self.recorder.upload_meta(&SoftmaxMeta {
            rows,
            cols: total as u32,
            _pad0: 0,
            _pad1: 0,
        });
        self.recorder.dispatch(
            KernelId::Softmax,
            &[Arg::Arena(softmax), Arg::Buffer(scores.buffer())],
            (rows, 1, 1),
        );
        let out = self.pool.tensor(t, n_heads * head_dim);
        self.recorder.dispatch(
            KernelId::AttentionValues,
            &[
                Arg::Arena(meta),
                Arg::Buffer(scores.buffer()),
                Arg::Buffer(&cache.values),
                Arg::Buffer(out.buffer()),
            ],
            ((head_dim as u32).div_ceil(64), t as u32, n_heads as u32),
        );
        Ok((out, want_probs.then_some(scores)))
    }
}

impl GpuBackend {
    /// [`crate::backend::Backend::cache_keep`]: the cache is copied aside, then the kept rows
    /// are written back from the copy (in place they could overwrite rows still to be read).
    pub(in crate::gpu) fn record_cache_keep(
        &self,
        cache: &mut GpuCache,
        keep: &[usize],
        angles: &[[f32; 2]],
        style: RopeStyle,
    ) {
        let AttentionShape {
            n_kv_heads,
            head_dim,
            ..
        } = cache.shape;
        if keep.is_empty() {
            cache.len = 0;
            return;
        }
        let rows = n_kv_heads * cache.capacity;
        let bytes = (rows * head_dim * 4) as u64;
        let (old_keys, old_values) = (
            self.pool.tensor(rows, head_dim),
            self.pool.tensor(rows, head_dim),
        );
        self.recorder
            .copy(&cache.keys, 0, old_keys.buffer(), 0, bytes);
        self.recorder
            .copy(&cache.values, 0, old_values.buffer(), 0, bytes);
        let sources: Vec<u32> = keep.iter().map(|&slot| slot as u32).collect();
        let sources = self.recorder.upload(bytemuck::cast_slice(&sources));
        let angles = self.recorder.upload(bytemuck::cast_slice(angles));
        let meta = self.recorder.upload_meta(&KvKeepMeta {
            kept: keep.len() as u32,
            kv_heads: n_kv_heads as u32,
            head_dim: head_dim as u32,
            capacity: cache.capacity as u32,
            halves: u32::from(style == RopeStyle::Halves),
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        });
        self.recorder.dispatch(
            KernelId::KvKeep,
            &[
                Arg::Arena(meta),
                Arg::Buffer(old_keys.buffer()),
                Arg::Buffer(old_values.buffer()),
                Arg::Arena(sources),
                Arg::Arena(angles),
                Arg::Buffer(&cache.keys),
                Arg::Buffer(&cache.values),
            ],
            (
                ((n_kv_heads * head_dim / 2) as u32).div_ceil(256),
                keep.len() as u32,
                1,
            ),
        );
        cache.len = keep.len();
    }
}
