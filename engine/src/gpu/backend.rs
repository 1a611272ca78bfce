//! The WebGPU backend: every [`Backend`] op is one or a few dispatches of our WGSL kernels,
//! recorded into one command encoder and submitted when something is read back.
//!
//! Activations live in pooled storage buffers (a tensor returns its buffer to the pool when
//! dropped; queue order keeps reuse safe). Uniforms and small inputs go through an
//! [`UploadArena`]. Weights are uploaded as the GGUF stream hands them out, in a 4-byte-aligned
//! repacking of their blocks (`kernels/quant_blocks.wgsl`); all arithmetic is f32.

use super::kernels::meta::{
    AttentionMeta, ElementwiseMeta, EmbeddingMeta, GroupNormMeta, KvAppendMeta, MatmulMeta,
    RetentionMeta, RmsNormMeta, RopeMeta, SelectMeta, SoftmaxMeta,
};
use super::kernels::{grid_1d, ArenaSlice, Family, KernelId, PipelineCache, UploadArena};
use super::{GpuContext, GpuError};
use crate::backend::{rope_angles, AttentionShape, Backend, Mask, RetentionForm};
use crate::cpu::blocks;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, TensorInfo};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// Storage buffers free for reuse, by size.
#[derive(Default)]
struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
}

/// A pooled buffer, back in the pool when the last tensor using it is dropped.
struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Rc<RefCell<BufferPool>>,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            if let Ok(mut pool) = self.pool.try_borrow_mut() {
                pool.free.entry(buffer.size()).or_default().push(buffer);
            }
        }
    }
}

/// Activations on the GPU: `(rows, cols)` f32.
#[derive(Clone)]
pub struct GpuTensor {
    buffer: Rc<PooledBuffer>,
    pub rows: usize,
    pub cols: usize,
}

impl GpuTensor {
    fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .buffer
            .as_ref()
            .expect("a live tensor holds its buffer")
    }
}

/// A weight matrix on the GPU, in its block format (see `quant_blocks.wgsl`).
pub struct GpuMatrix {
    buffer: wgpu::Buffer,
    ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    row_words: usize,
}

/// One layer's keys and values: `(kv_heads, capacity, head_dim)` f32 each.
pub struct GpuCache {
    keys: wgpu::Buffer,
    values: wgpu::Buffer,
    len: usize,
    capacity: usize,
    shape: AttentionShape,
}

/// Per-kernel-family GPU time, when the adapter has timestamp queries.
struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    /// Family of each recorded pass, in query-pair order.
    passes: Vec<Family>,
    totals: HashMap<Family, (f64, u64)>,
}

struct Recording {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass: dispatches share one pass (WebGPU orders their writes and reads
    /// within it), which costs browsers far less than a pass each. Closed before any copy.
    pass: Option<wgpu::ComputePass<'static>>,
    arena: UploadArena,
}

impl Recording {
    fn encoder(&mut self, ctx: &GpuContext) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder
            .get_or_insert_with(|| ctx.device.create_command_encoder(&Default::default()))
    }
}

pub struct GpuBackend {
    ctx: GpuContext,
    pipelines: PipelineCache,
    recording: RefCell<Recording>,
    pool: Rc<RefCell<BufferPool>>,
    profiler: RefCell<Option<Profiler>>,
    weight_bytes: Cell<u64>,
    cache_bytes: Cell<u64>,
    force_cpu_shapes: Cell<Option<bool>>,
}

enum Arg<'a> {
    Buffer(&'a wgpu::Buffer),
    Arena(ArenaSlice),
}

impl GpuBackend {
    pub fn new(ctx: GpuContext) -> Self {
        let arena = UploadArena::new(&ctx);
        GpuBackend {
            ctx,
            pipelines: PipelineCache::default(),
            recording: RefCell::new(Recording {
                encoder: None,
                pass: None,
                arena,
            }),
            pool: Rc::new(RefCell::new(BufferPool::default())),
            profiler: RefCell::new(None),
            weight_bytes: Cell::new(0),
            cache_bytes: Cell::new(0),
            force_cpu_shapes: Cell::new(None),
        }
    }

    /// Requests an adapter and a device, then builds the backend.
    pub async fn create() -> std::result::Result<Self, GpuError> {
        Ok(Self::new(GpuContext::new().await?))
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// A CPU implementation of WebGPU (lavapipe, SwiftShader): it gets kernels shaped for SIMD
    /// lanes rather than for GPU warps.
    pub fn cpu_adapter(&self) -> bool {
        self.force_cpu_shapes.get().unwrap_or_else(|| {
            // Browsers do not always flag SwiftShader as a fallback adapter: its name tells.
            let name = self.ctx.description().to_lowercase();
            self.ctx.info.device_type == wgpu::DeviceType::Cpu
                || ["swiftshader", "llvmpipe", "lavapipe"]
                    .iter()
                    .any(|n| name.contains(n))
        })
    }

    /// Overrides the kernel shapes' choice (tests run both shapes on one adapter).
    pub fn set_cpu_shapes(&self, cpu: Option<bool>) {
        self.force_cpu_shapes.set(cpu);
    }

    /// GPU memory held by weights and KV caches, in bytes.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (self.weight_bytes.get(), self.cache_bytes.get())
    }

    /// Starts timing each kernel family with timestamp queries; false where the adapter has none.
    pub fn enable_profiling(&self) -> bool {
        if !self.ctx.timestamps {
            return false;
        }
        let capacity = 4096; // the most one query set may hold
        let queries = self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel timings"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let resolve = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel timings"),
            size: capacity as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        *self.profiler.borrow_mut() = Some(Profiler {
            queries,
            resolve,
            capacity,
            passes: Vec::new(),
            totals: HashMap::new(),
        });
        true
    }

    /// Milliseconds and dispatch counts per kernel family since profiling started.
    pub fn kernel_times(&self) -> Vec<(&'static str, f64, u64)> {
        let profiler = self.profiler.borrow();
        let mut out: Vec<_> = profiler
            .iter()
            .flat_map(|p| p.totals.iter().map(|(k, (ms, n))| (k.name(), *ms, *n)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    fn storage(&self, bytes: usize) -> Rc<PooledBuffer> {
        let size = (bytes.max(4).div_ceil(4) * 4) as u64;
        let reused = self
            .pool
            .borrow_mut()
            .free
            .get_mut(&size)
            .and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activations"),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Rc::new(PooledBuffer {
            buffer: Some(buffer),
            pool: Rc::clone(&self.pool),
        })
    }

    fn new_tensor(&self, rows: usize, cols: usize) -> GpuTensor {
        GpuTensor {
            buffer: self.storage(rows * cols * 4),
            rows,
            cols,
        }
    }

    fn upload(&self, bytes: &[u8]) -> ArenaSlice {
        self.recording.borrow_mut().arena.push(&self.ctx, bytes)
    }

    fn check_binding_size(&self, what: &str, bytes: u64) -> Result<()> {
        let limit = self.ctx.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::OutOfMemory(format!(
                "{what} needs {bytes} bytes in one buffer; this adapter binds at most {limit}"
            ))
            .into());
        }
        Ok(())
    }

    /// Records one dispatch of `kernel` with `args` bound in order.
    fn dispatch(&self, kernel: KernelId, args: &[Arg<'_>], groups: (u32, u32, u32)) {
        let pipeline = self.pipelines.get(&self.ctx, kernel);
        let mut recording = self.recording.borrow_mut();
        let entries: Vec<wgpu::BindGroupEntry> = args
            .iter()
            .enumerate()
            .map(|(i, arg)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match arg {
                    Arg::Buffer(b) => b.as_entire_binding(),
                    Arg::Arena(slice) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: recording.arena.buffer(slice.chunk),
                        offset: slice.offset,
                        size: wgpu::BufferSize::new(slice.size),
                    }),
                },
            })
            .collect();
        let bind_group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry()),
                layout: &pipeline.layout,
                entries: &entries,
            });
        let mut profiler = self.profiler.borrow_mut();
        if let Some(p) = profiler.as_mut() {
            // Timed: a pass of its own, with timestamps at its ends.
            let pair = p.passes.len() as u32;
            let timestamp_writes = (2 * pair + 2 <= p.capacity).then(|| {
                p.passes.push(kernel.family());
                wgpu::ComputePassTimestampWrites {
                    query_set: &p.queries,
                    beginning_of_pass_write_index: Some(2 * pair),
                    end_of_pass_write_index: Some(2 * pair + 1),
                }
            });
            let encoder = recording.encoder(&self.ctx);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.entry()),
                timestamp_writes,
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            return;
        }
        if recording.pass.is_none() {
            let encoder = recording
                .encoder
                .get_or_insert_with(|| self.ctx.device.create_command_encoder(&Default::default()));
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            recording.pass = Some(pass);
        }
        if let Some(pass) = recording.pass.as_mut() {
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
    }

    /// Submits everything recorded, with `copies` (source, bytes) read back; returns the bytes.
    async fn submit_and_read(
        &self,
        copies: &[(&wgpu::Buffer, u64, usize)],
    ) -> Result<Vec<Vec<u8>>> {
        self.ctx.check_lost()?;
        let mut encoder = {
            let mut recording = self.recording.borrow_mut();
            recording.pass = None;
            recording.arena.flush(&self.ctx);
            recording
                .encoder
                .take()
                .unwrap_or_else(|| self.ctx.device.create_command_encoder(&Default::default()))
        };
        let staging: Vec<(wgpu::Buffer, usize)> = copies
            .iter()
            .map(|&(source, offset, bytes)| {
                let size = (bytes.max(4).div_ceil(4) * 4) as u64;
                let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read back"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.copy_buffer_to_buffer(source, offset, &staging, 0, size);
                (staging, bytes)
            })
            .collect();
        let timings = self.resolve_timings(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        let mut out = Vec::with_capacity(staging.len());
        for (buffer, bytes) in &staging {
            out.push(self.map(buffer, *bytes).await?);
        }
        if let Some((buffer, families)) = timings {
            let raw = self.map(&buffer, families.len() * 16).await?;
            self.record_timings(&raw, &families);
        }
        Ok(out)
    }

    async fn map(&self, buffer: &wgpu::Buffer, bytes: usize) -> Result<Vec<u8>> {
        let slice = buffer.slice(..);
        let (sender, receiver) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        let mapped = receiver
            .await
            .map_err(|_| GpuError::DeviceLost("the read-back was dropped".into()))?;
        self.ctx.check_lost()?;
        mapped.map_err(|e| GpuError::Other(format!("mapping failed: {e}")))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Other(format!("mapped range: {e}")))?[..bytes]
            .to_vec();
        buffer.unmap();
        Ok(data)
    }

    fn resolve_timings(
        &self,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Option<(wgpu::Buffer, Vec<Family>)> {
        let mut profiler = self.profiler.borrow_mut();
        let p = profiler.as_mut()?;
        if p.passes.is_empty() {
            return None;
        }
        let families = std::mem::take(&mut p.passes);
        let count = 2 * families.len() as u32;
        encoder.resolve_query_set(&p.queries, 0..count, &p.resolve, 0);
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timings read back"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&p.resolve, 0, &staging, 0, count as u64 * 8);
        Some((staging, families))
    }

    fn record_timings(&self, raw: &[u8], families: &[Family]) {
        let period = self.ctx.queue.get_timestamp_period() as f64;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(raw);
        let mut profiler = self.profiler.borrow_mut();
        let Some(p) = profiler.as_mut() else { return };
        for (i, family) in families.iter().enumerate() {
            let (begin, end) = (stamps[2 * i], stamps[2 * i + 1]);
            let ms = end.saturating_sub(begin) as f64 * period / 1e6;
            let entry = p.totals.entry(*family).or_insert((0.0, 0));
            entry.0 += ms;
            entry.1 += 1;
        }
    }

    /// Repacks GGUF blocks so every block starts on a 4-byte boundary (see quant_blocks.wgsl).
    /// K-quants have no kernel here and become f16.
    fn repack(info: &TensorInfo, bytes: &[u8]) -> (GgmlType, Vec<u8>) {
        let aligned = |block: usize, scale: usize| -> Vec<u8> {
            let mut out = Vec::with_capacity(bytes.len() / block * (block + 2));
            for b in bytes.chunks_exact(block) {
                out.extend_from_slice(&b[..scale]);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&b[scale..]);
            }
            out
        };
        match info.ggml_type {
            GgmlType::Q4_1 | GgmlType::F32 => (info.ggml_type, bytes.to_vec()),
            GgmlType::Q4_0 => (GgmlType::Q4_0, aligned(18, 2)),
            GgmlType::Q8_0 => (GgmlType::Q8_0, aligned(34, 2)),
            GgmlType::F16 if info.dims[0].is_multiple_of(2) => (GgmlType::F16, bytes.to_vec()),
            ty => {
                let values = blocks::dequantize_to_vec(ty, bytes);
                (GgmlType::F32, bytemuck::cast_slice(&values).to_vec())
            }
        }
    }

    /// Runs `selected` picks of top_one over `logits` (a copy, penalised) and reads them back.
    async fn select(
        &self,
        logits: &GpuTensor,
        k: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<(u32, f32)>> {
        let n = logits.cols;
        let row = (logits.rows - 1) * n * 4;
        let scratch = self.storage(n * 4);
        let scratch_buffer = scratch.buffer.as_ref().expect("live");
        {
            let mut recording = self.recording.borrow_mut();
            let encoder = recording.encoder(&self.ctx);
            encoder.copy_buffer_to_buffer(
                logits.buffer(),
                row as u64,
                scratch_buffer,
                0,
                (n * 4) as u64,
            );
        }
        let k = k.clamp(1, n);
        let picks = self.storage(k * 8);
        let picks_buffer = picks.buffer.as_ref().expect("live");
        let ids: Vec<u32> = if penalty != 1.0 {
            penalized.to_vec()
        } else {
            Vec::new()
        };
        let id_slice = self.upload(bytemuck::cast_slice(if ids.is_empty() {
            &[0u32]
        } else {
            &ids
        }));
        if !ids.is_empty() {
            let meta = self.upload(bytemuck::bytes_of(&SelectMeta {
                n: n as u32,
                count: ids.len() as u32,
                penalty,
                _pad: 0,
            }));
            self.dispatch(
                KernelId::Penalize,
                &[
                    Arg::Arena(meta),
                    Arg::Arena(id_slice),
                    Arg::Buffer(scratch_buffer),
                    Arg::Buffer(picks_buffer),
                ],
                (ids.len().div_ceil(64) as u32, 1, 1),
            );
        }
        for slot in 0..k {
            let meta = self.upload(bytemuck::bytes_of(&SelectMeta {
                n: n as u32,
                count: slot as u32,
                penalty: 0.0,
                _pad: 0,
            }));
            self.dispatch(
                KernelId::TopOne,
                &[
                    Arg::Arena(meta),
                    Arg::Arena(id_slice),
                    Arg::Buffer(scratch_buffer),
                    Arg::Buffer(picks_buffer),
                ],
                (1, 1, 1),
            );
        }
        let raw = self
            .submit_and_read(&[(picks_buffer, 0, k * 8)])
            .await?
            .remove(0);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&raw);
        Ok(words
            .chunks_exact(2)
            .map(|p| (p[0], f32::from_bits(p[1])))
            .collect())
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Matrix = GpuMatrix;
    type Cache = GpuCache;

    fn name(&self) -> String {
        format!("WebGPU ({})", self.ctx.description())
    }

    fn upload_matrix(&self, info: &TensorInfo, bytes: &[u8]) -> Result<GpuMatrix> {
        let (rows, cols) = info.rows_cols();
        let (ty, data) = Self::repack(info, bytes);
        self.check_binding_size(&info.name, data.len() as u64)?;
        let buffer = self.ctx.storage_buffer(&info.name, &data);
        self.weight_bytes
            .set(self.weight_bytes.get() + buffer.size());
        Ok(GpuMatrix {
            buffer,
            ty,
            rows,
            cols,
            row_words: data.len() / 4 / rows.max(1),
        })
    }

    fn upload_vector(&self, info: &TensorInfo, bytes: &[u8]) -> Result<GpuTensor> {
        let values = blocks::dequantize_to_vec(info.ggml_type, bytes);
        let tensor = self.tensor(&values, 1, values.len())?;
        self.weight_bytes
            .set(self.weight_bytes.get() + (values.len() * 4) as u64);
        Ok(tensor)
    }

    fn tensor(&self, data: &[f32], rows: usize, cols: usize) -> Result<GpuTensor> {
        // A fresh buffer (not from the pool), so writing it now cannot race recorded commands.
        let buffer = self
            .ctx
            .storage_buffer("tensor", bytemuck::cast_slice(data));
        Ok(GpuTensor {
            buffer: Rc::new(PooledBuffer {
                buffer: Some(buffer),
                pool: Rc::clone(&self.pool),
            }),
            rows,
            cols,
        })
    }

    fn new_cache(&self, shape: AttentionShape, capacity: usize) -> Result<GpuCache> {
        let bytes = shape.n_kv_heads * capacity * shape.head_dim * 4;
        self.check_binding_size("the KV cache", bytes as u64)?;
        let keys = self.ctx.empty_buffer("keys", bytes);
        let values = self.ctx.empty_buffer("values", bytes);
        self.cache_bytes
            .set(self.cache_bytes.get() + 2 * bytes as u64);
        Ok(GpuCache {
            keys,
            values,
            len: 0,
            capacity,
            shape,
        })
    }

    fn cache_len(&self, cache: &GpuCache) -> usize {
        cache.len
    }

    fn cache_truncate(&self, cache: &mut GpuCache, len: usize) {
        cache.len = cache.len.min(len);
    }

    fn embed(&self, table: &GpuMatrix, ids: &[u32]) -> Result<GpuTensor> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                table.rows
            )));
        }
        let out = self.new_tensor(ids.len(), table.cols);
        let meta = self.upload(bytemuck::bytes_of(&EmbeddingMeta {
            tokens: ids.len() as u32,
            cols: table.cols as u32,
            row_words: table.row_words as u32,
            _pad: 0,
        }));
        let ids = self.upload(bytemuck::cast_slice(ids));
        self.dispatch(
            KernelId::Gather(table.ty),
            &[
                Arg::Arena(meta),
                Arg::Arena(ids),
                Arg::Buffer(&table.buffer),
                Arg::Buffer(out.buffer()),
            ],
            ((table.cols as u32).div_ceil(256), out.rows as u32, 1),
        );
        Ok(out)
    }

    fn rms_norm(&self, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        let out = self.new_tensor(x.rows, x.cols);
        let meta = self.upload(bytemuck::bytes_of(&RmsNormMeta {
            rows: x.rows as u32,
            cols: x.cols as u32,
            eps,
            _pad: 0,
        }));
        self.dispatch(
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

    fn matmul(&self, x: &GpuTensor, weights: &[&GpuMatrix]) -> Result<Vec<GpuTensor>> {
        weights
            .iter()
            .map(|w| {
                if w.cols != x.cols {
                    return Err(Error::InvalidRequest(format!(
                        "matmul: input has {} features, the matrix expects {}",
                        x.cols, w.cols
                    )));
                }
                let out = self.new_tensor(x.rows, w.rows);
                let meta = self.upload(bytemuck::bytes_of(&MatmulMeta {
                    rows: w.rows as u32,
                    cols: w.cols as u32,
                    tokens: x.rows as u32,
                    row_words: w.row_words as u32,
                }));
                let args = [
                    Arg::Arena(meta),
                    Arg::Buffer(&w.buffer),
                    Arg::Buffer(x.buffer()),
                    Arg::Buffer(out.buffer()),
                ];
                // CPU adapters: one invocation per row streams fastest, barriers are dear.
                if self.cpu_adapter() {
                    self.dispatch(
                        KernelId::MatvecRows(w.ty),
                        &args,
                        ((w.rows as u32).div_ceil(64), x.rows as u32, 1),
                    );
                } else if x.rows <= 2 {
                    self.dispatch(
                        KernelId::Matvec(w.ty),
                        &args,
                        ((w.rows as u32).div_ceil(8), x.rows as u32, 1),
                    );
                } else {
                    self.dispatch(
                        KernelId::MatmulTiled(w.ty),
                        &args,
                        (
                            (w.rows as u32).div_ceil(32),
                            (x.rows as u32).div_ceil(32),
                            1,
                        ),
                    );
                }
                Ok(out)
            })
            .collect()
    }

    fn rope(
        &self,
        x: &GpuTensor,
        head_dim: usize,
        positions: &[u32],
        base: f32,
    ) -> Result<GpuTensor> {
        if positions.len() != x.rows
            || !x.cols.is_multiple_of(head_dim)
            || !head_dim.is_multiple_of(2)
        {
            return Err(Error::InvalidRequest(format!(
                "rope: {} tokens, {} positions, {} features, head_dim {head_dim}",
                x.rows,
                positions.len(),
                x.cols
            )));
        }
        let out = self.new_tensor(x.rows, x.cols);
        let angles = rope_angles(positions, head_dim, base);
        let angles = self.upload(bytemuck::cast_slice(&angles));
        let meta = self.upload(bytemuck::bytes_of(&RopeMeta {
            tokens: x.rows as u32,
            features: x.cols as u32,
            head_dim: head_dim as u32,
            _pad: 0,
        }));
        self.dispatch(
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

    fn attention(
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
        if cache.shape != shape {
            return Err(Error::InvalidRequest(
                "attention: the cache has another shape".into(),
            ));
        }
        if cache.len + t > cache.capacity {
            return Err(Error::ContextOverflow {
                prompt: cache.len + t,
                context: cache.capacity,
            });
        }
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = shape;
        let append = self.upload(bytemuck::bytes_of(&KvAppendMeta {
            tokens: t as u32,
            kv_heads: n_kv_heads as u32,
            head_dim: head_dim as u32,
            capacity: cache.capacity as u32,
            start: cache.len as u32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }));
        self.dispatch(
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
        self.check_binding_size("the attention scores", probs_bytes)?;

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
        let scores = self.new_tensor(n_heads * t, total);
        let meta = self.upload(bytemuck::bytes_of(&AttentionMeta {
            tokens: t as u32,
            heads: n_heads as u32,
            kv_heads: n_kv_heads as u32,
            head_dim: head_dim as u32,
            total: total as u32,
            capacity: cache.capacity as u32,
            causal,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }));
        let bits = self.upload(bytemuck::cast_slice(&bits));
        self.dispatch(
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
        if rows > self.ctx.limits.max_compute_workgroups_per_dimension {
            return Err(Error::InvalidRequest(format!(
                "attention over {t} new tokens needs {rows} softmax rows; feed fewer tokens at a time"
            )));
        }
        let softmax = self.upload(bytemuck::bytes_of(&SoftmaxMeta {
            rows,
            cols: total as u32,
            _pad0: 0,
            _pad1: 0,
        }));
        self.dispatch(
            KernelId::Softmax,
            &[Arg::Arena(softmax), Arg::Buffer(scores.buffer())],
            (rows, 1, 1),
        );
        let out = self.new_tensor(t, n_heads * head_dim);
        self.dispatch(
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

    fn retention(
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
        if width != decays.len() * head_dim
            || (k.rows, k.cols) != (t, width)
            || (v.rows, v.cols) != (t, width)
            || head_dim > 64
        {
            return Err(Error::InvalidRequest(format!(
                "retention: q {t}x{width}, k {}x{}, v {}x{} for {} heads of {head_dim} (at most 64)",
                k.rows,
                k.cols,
                v.rows,
                v.cols,
                decays.len()
            )));
        }
        let chunk = match form {
            RetentionForm::Chunkwise(chunk) => chunk.max(1),
            _ => t,
        };
        let meta = self.upload(bytemuck::bytes_of(&RetentionMeta {
            t: t as u32,
            heads: decays.len() as u32,
            head_dim: head_dim as u32,
            chunk: chunk as u32,
            scale: 1.0 / (head_dim as f32).sqrt(),
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }));
        let decays = self.upload(bytemuck::cast_slice(decays));
        let heads = (width / head_dim.max(1)) as u32;
        let mut scores = None;
        if want_scores || form == RetentionForm::Parallel {
            let s = self.new_tensor(heads as usize * t, t);
            self.check_binding_size("the retention scores", (s.rows * s.cols * 4) as u64)?;
            self.dispatch(
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
        let out = self.new_tensor(t, width);
        let (kernel, extra, groups) = match form {
            RetentionForm::Parallel => (
                KernelId::RetentionValues,
                scores.as_ref().map_or(q.buffer(), |s| s.buffer()),
                grid_1d(&self.ctx, (t * width) as u32, 64),
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
        self.dispatch(
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

    fn group_norm(
        &self,
        x: &GpuTensor,
        groups: usize,
        weight: &GpuTensor,
        bias: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        let features = weight.rows * weight.cols;
        if groups == 0
            || !x.cols.is_multiple_of(groups)
            || features != x.cols
            || bias.rows * bias.cols != x.cols
        {
            return Err(Error::InvalidRequest(format!(
                "group_norm: {} features in {groups} groups, {features} weights",
                x.cols
            )));
        }
        let out = self.new_tensor(x.rows, x.cols);
        let meta = self.upload(bytemuck::bytes_of(&GroupNormMeta {
            rows: x.rows as u32,
            cols: x.cols as u32,
            groups: groups as u32,
            eps,
        }));
        self.dispatch(
            KernelId::GroupNorm,
            &[
                Arg::Arena(meta),
                Arg::Buffer(x.buffer()),
                Arg::Buffer(weight.buffer()),
                Arg::Buffer(bias.buffer()),
                Arg::Buffer(out.buffer()),
            ],
            grid_1d(&self.ctx, (x.rows * groups) as u32, 64),
        );
        Ok(out)
    }

    fn gelu(&self, x: &GpuTensor) -> Result<GpuTensor> {
        self.elementwise(KernelId::Gelu, x, x)
    }

    fn silu_mul(&self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        self.elementwise(KernelId::SiluMul, gate, up)
    }

    fn add(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        self.elementwise(KernelId::Add, a, b)
    }

    fn last_rows(&self, x: &GpuTensor, n: usize) -> Result<GpuTensor> {
        let n = n.min(x.rows);
        if n == x.rows {
            return Ok(x.clone());
        }
        let out = self.new_tensor(n, x.cols);
        self.recording
            .borrow_mut()
            .encoder(&self.ctx)
            .copy_buffer_to_buffer(
                x.buffer(),
                ((x.rows - n) * x.cols * 4) as u64,
                out.buffer(),
                0,
                (n * x.cols * 4) as u64,
            );
        Ok(out)
    }

    fn dims(&self, x: &GpuTensor) -> (usize, usize) {
        (x.rows, x.cols)
    }

    async fn read(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        let bytes = x.rows * x.cols * 4;
        let raw = self
            .submit_and_read(&[(x.buffer(), 0, bytes)])
            .await?
            .remove(0);
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    async fn top_k(
        &self,
        logits: &GpuTensor,
        k: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<(u32, f32)>> {
        self.select(logits, k, penalized, penalty).await
    }
}

impl GpuBackend {
    fn elementwise(&self, kernel: KernelId, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(Error::InvalidRequest(format!(
                "{}: shapes {}x{} and {}x{} differ",
                kernel.entry(),
                a.rows,
                a.cols,
                b.rows,
                b.cols
            )));
        }
        let n = a.rows * a.cols;
        let out = self.new_tensor(a.rows, a.cols);
        let meta = self.upload(bytemuck::bytes_of(&ElementwiseMeta {
            n: n as u32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }));
        self.dispatch(
            kernel,
            &[
                Arg::Arena(meta),
                Arg::Buffer(a.buffer()),
                Arg::Buffer(b.buffer()),
                Arg::Buffer(out.buffer()),
            ],
            grid_1d(&self.ctx, n as u32, 256),
        );
        Ok(out)
    }
}
