//! The WebGPU backend: every [`Backend`] op is one or a few dispatches of our WGSL kernels
//! (recorded by the `ops` modules), recorded into one command encoder and submitted when
//! something is read back.
//!
//! Activations live in pooled storage buffers (a tensor returns its buffer to the pool when
//! dropped; queue order keeps reuse safe). Uniforms and small inputs go through an upload
//! arena. Weights are uploaded as the GGUF stream hands them out, in a 4-byte-aligned
//! repacking of their blocks (`kernels/quant_blocks.wgsl`); all arithmetic is f32.

use super::buffers::{
    repack, rows_per_part, BufferPool, GpuCache, GpuMatrix, GpuTensor, MatrixPart,
};
use super::context::{GpuContext, GpuError};
use super::kernels::KernelId;
use super::recording::{Recorder, WorkCounts};
use crate::backend::{
    checks, rope_shift_angles, AttentionShape, Backend, Mask, RetentionForm, RopeSpec, RopeStyle,
    Selection,
};
use crate::error::Result;
use crate::gguf::blocks;
use crate::gguf::TensorInfo;
use std::cell::Cell;

pub struct GpuBackend {
    pub(super) recorder: Recorder,
    pub(super) pool: BufferPool,
    weight_bytes: Cell<u64>,
    cache_bytes: Cell<u64>,
    force_cpu_shapes: Cell<Option<bool>>,
    max_part_bytes: Cell<Option<u64>>,
}

impl GpuBackend {
    pub fn new(ctx: GpuContext) -> Self {
        GpuBackend {
            pool: BufferPool::new(&ctx),
            recorder: Recorder::new(ctx),
            weight_bytes: Cell::new(0),
            cache_bytes: Cell::new(0),
            force_cpu_shapes: Cell::new(None),
            max_part_bytes: Cell::new(None),
        }
    }

    /// Requests an adapter and a device, then builds the backend.
    pub async fn create() -> std::result::Result<Self, GpuError> {
        Ok(Self::new(GpuContext::new().await?))
    }

    pub fn context(&self) -> &GpuContext {
        self.recorder.context()
    }

    /// A CPU implementation of WebGPU (lavapipe, SwiftShader): it gets kernels shaped for SIMD
    /// lanes rather than for GPU warps.
    pub fn cpu_adapter(&self) -> bool {
        self.force_cpu_shapes.get().unwrap_or_else(|| {
            // Browsers do not always flag SwiftShader as a fallback adapter: its name tells.
            let ctx = self.context();
            let name = ctx.description().to_lowercase();
            ctx.info.device_type == wgpu::DeviceType::Cpu
                || ["swiftshader", "llvmpipe", "lavapipe"]
                    .iter()
                    .any(|n| name.contains(n))
        })
    }

    /// Overrides the kernel shapes' choice (tests run both shapes on one adapter).
    pub fn set_cpu_shapes(&self, cpu: Option<bool>) {
        self.force_cpu_shapes.set(cpu);
    }

    /// Caps the parts weight matrices are split into below the adapter's limit (tests split
    /// small matrices to check the parts add up); applies to matrices uploaded afterwards.
    pub fn set_max_part_bytes(&self, bytes: Option<u64>) {
        self.max_part_bytes.set(bytes);
    }

    /// GPU memory held by weights and KV caches, in bytes.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (self.weight_bytes.get(), self.cache_bytes.get())
    }

    /// Starts timing each kernel family with timestamp queries; false where the adapter has none.
    pub fn enable_profiling(&self) -> bool {
        self.recorder.enable_profiling()
    }

    /// Milliseconds and dispatch counts per kernel family since profiling started.
    pub fn kernel_times(&self) -> Vec<(&'static str, f64, u64)> {
        self.recorder.kernel_times()
    }

    /// Submits and dispatches since this backend was made.
    pub fn work_counts(&self) -> WorkCounts {
        self.recorder.work_counts()
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Matrix = GpuMatrix;
    type Cache = GpuCache;

    fn name(&self) -> String {
        format!("WebGPU ({})", self.context().description())
    }

    fn upload_matrix(&self, info: &TensorInfo, bytes: Vec<u8>) -> Result<GpuMatrix> {
        let (rows, cols) = info.rows_cols();
        let (ty, data) = repack(info, bytes);
        let row_bytes = data.len() / rows.max(1);
        let context = self.context();
        context.check_binding_size(&info.name, row_bytes as u64)?;
        let limit = context.max_part_bytes();
        let max_part = self
            .max_part_bytes
            .get()
            .map_or(limit, |cap| cap.min(limit));
        let part_rows = rows_per_part(row_bytes, max_part);
        let mut parts = Vec::with_capacity(rows.div_ceil(part_rows));
        for first_row in (0..rows).step_by(part_rows) {
            let part = part_rows.min(rows - first_row);
            let slice = &data[first_row * row_bytes..(first_row + part) * row_bytes];
            let buffer = context.storage_buffer(&info.name, slice);
            self.weight_bytes
                .set(self.weight_bytes.get() + buffer.size());
            parts.push(MatrixPart {
                buffer,
                first_row,
                rows: part,
            });
        }
        Ok(GpuMatrix {
            parts,
            ty,
            rows,
            cols,
            row_words: row_bytes / 4,
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
            .context()
            .storage_buffer("tensor", bytemuck::cast_slice(data));
        Ok(self.pool.adopt(buffer, rows, cols))
    }

    fn new_cache(&self, shape: AttentionShape, capacity: usize) -> Result<GpuCache> {
        let bytes = shape.n_kv_heads * capacity * shape.head_dim * 4;
        self.context()
            .check_binding_size("the KV cache", bytes as u64)?;
        let keys = self.context().empty_buffer("keys", bytes);
        let values = self.context().empty_buffer("values", bytes);
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

    fn cache_keep(
        &self,
        cache: &mut GpuCache,
        keep: &[usize],
        shifts: &[i32],
        rope: RopeSpec,
    ) -> Result<()> {
        checks::cache_keep(cache.len, keep, shifts)?;
        let angles = rope_shift_angles(shifts, cache.shape.head_dim, rope.base);
        self.record_cache_keep(cache, keep, &angles, rope.style);
        Ok(())
    }

    fn embed(&self, table: &GpuMatrix, ids: &[u32]) -> Result<GpuTensor> {
        checks::embed(ids, table.rows)?;
        self.record_embed(table, ids)
    }

    fn rms_norm(&self, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        checks::rms_norm(x.dims(), weight.rows * weight.cols)?;
        self.record_rms_norm(x, weight, eps)
    }

    fn matmul(&self, x: &GpuTensor, weights: &[&GpuMatrix]) -> Result<Vec<GpuTensor>> {
        let shapes: Vec<_> = weights.iter().map(|w| (w.rows, w.cols)).collect();
        checks::matmul(x.dims(), &shapes)?;
        weights.iter().map(|w| self.record_matmul(x, w)).collect()
    }

    fn rope(
        &self,
        x: &GpuTensor,
        head_dim: usize,
        positions: &[u32],
        base: f32,
        style: RopeStyle,
    ) -> Result<GpuTensor> {
        checks::rope(x.dims(), head_dim, positions)?;
        self.record_rope(x, head_dim, positions, base, style)
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
        checks::attention(q.dims(), k.dims(), v.dims(), cache.state(), shape, mask)?;
        self.record_attention(q, k, v, cache, shape, mask, want_probs)
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
        checks::retention(q.dims(), k.dims(), v.dims(), head_dim, decays)?;
        self.record_retention(q, k, v, head_dim, decays, form, want_scores)
    }

    fn group_norm(
        &self,
        x: &GpuTensor,
        groups: usize,
        weight: &GpuTensor,
        bias: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        let (weights, biases) = (weight.rows * weight.cols, bias.rows * bias.cols);
        checks::group_norm(x.dims(), groups, weights, biases)?;
        self.record_group_norm(x, groups, weight, bias, eps)
    }

    fn gelu(&self, x: &GpuTensor) -> Result<GpuTensor> {
        self.record_elementwise(KernelId::Gelu, x, x, 0.0)
    }

    fn silu_mul(&self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        checks::same_shape("silu_mul", gate.dims(), up.dims())?;
        self.record_elementwise(KernelId::SiluMul, gate, up, 0.0)
    }

    fn gelu_mul(&self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        checks::same_shape("gelu_mul", gate.dims(), up.dims())?;
        self.record_elementwise(KernelId::GeluMul, gate, up, 0.0)
    }

    fn scale(&self, x: &GpuTensor, factor: f32) -> Result<GpuTensor> {
        self.record_elementwise(KernelId::Scale, x, x, factor)
    }

    fn reshape(&self, x: &GpuTensor, rows: usize, cols: usize) -> Result<GpuTensor> {
        checks::reshape(x.dims(), rows, cols)?;
        Ok(x.reshaped(rows, cols))
    }

    fn add(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        checks::same_shape("add", a.dims(), b.dims())?;
        self.record_elementwise(KernelId::Add, a, b, 0.0)
    }

    fn column_affine(&self, x: &GpuTensor, coefficients: &GpuTensor) -> Result<GpuTensor> {
        checks::column_affine(x.dims(), coefficients.dims())?;
        self.record_elementwise(KernelId::ColumnAffine, x, coefficients, 0.0)
    }

    fn splice_rows(&self, x: &GpuTensor, first_row: usize, rows: &GpuTensor) -> Result<GpuTensor> {
        checks::splice_rows(x.dims(), first_row, rows.dims())?;
        let out = self.pool.tensor(x.rows, x.cols);
        let row_bytes = (x.cols * 4) as u64;
        self.recorder
            .copy(x.buffer(), 0, out.buffer(), 0, x.rows as u64 * row_bytes);
        self.recorder.copy(
            rows.buffer(),
            0,
            out.buffer(),
            first_row as u64 * row_bytes,
            rows.rows as u64 * row_bytes,
        );
        Ok(out)
    }

    fn quantize_activations(
        &self,
        x: &GpuTensor,
        keep_outliers_above: Option<f32>,
    ) -> Result<GpuTensor> {
        Ok(self.record_quantize_activations(x, keep_outliers_above))
    }

    fn last_rows(&self, x: &GpuTensor, n: usize) -> Result<GpuTensor> {
        let n = n.min(x.rows);
        if n == x.rows {
            return Ok(x.clone());
        }
        let out = self.pool.tensor(n, x.cols);
        self.recorder.copy(
            x.buffer(),
            ((x.rows - n) * x.cols * 4) as u64,
            out.buffer(),
            0,
            (n * x.cols * 4) as u64,
        );
        Ok(out)
    }

    fn dims(&self, x: &GpuTensor) -> (usize, usize) {
        x.dims()
    }

    async fn read(&self, x: &GpuTensor) -> Result<Vec<f32>> {
        let bytes = x.rows * x.cols * 4;
        let raw = self
            .recorder
            .submit_and_read(&[(x.buffer(), 0, bytes)])
            .await?
            .remove(0);
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    async fn top_k(&self, logits: &GpuTensor, selection: &Selection) -> Result<Vec<(u32, f32)>> {
        checks::top_k(logits.dims(), selection)?;
        self.select(logits, selection.k, &selection.penalized, selection.penalty)
            .await
    }
}
