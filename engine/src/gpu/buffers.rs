//! Memory on the GPU: pooled activation buffers ([`GpuTensor`]), weight matrices in their
//! block format ([`GpuMatrix`]), KV caches ([`GpuCache`]), and the repacking of GGUF blocks
//! that weights go through on upload.

use super::context::{padded_size, GpuContext};
use crate::backend::checks::CacheState;
use crate::backend::AttentionShape;
use crate::gguf::blocks;
use crate::gguf::{GgmlType, TensorInfo};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Storage buffers free for reuse, by size.
type FreeBuffers = Rc<RefCell<HashMap<u64, Vec<wgpu::Buffer>>>>;

/// Activation buffers: a tensor returns its buffer here when dropped, and the next tensor of
/// the same size takes it. Queue order keeps reuse safe: commands recorded later run later.
pub(super) struct BufferPool {
    device: wgpu::Device,
    free: FreeBuffers,
}

/// A pooled buffer, back in the pool when the last tensor using it is dropped.
struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    free: FreeBuffers,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            if let Ok(mut free) = self.free.try_borrow_mut() {
                free.entry(buffer.size()).or_default().push(buffer);
            }
        }
    }
}

impl BufferPool {
    pub(super) fn new(ctx: &GpuContext) -> Self {
        BufferPool {
            device: ctx.device.clone(),
            free: Rc::default(),
        }
    }

    /// A `(rows, cols)` f32 tensor, its contents whatever the buffer last held.
    pub(super) fn tensor(&self, rows: usize, cols: usize) -> GpuTensor {
        let size = padded_size(rows * cols * 4);
        let reused = self.free.borrow_mut().get_mut(&size).and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activations"),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        self.adopt(buffer, rows, cols)
    }

    /// A tensor over `buffer`, which joins the pool when the tensor is dropped.
    pub(super) fn adopt(&self, buffer: wgpu::Buffer, rows: usize, cols: usize) -> GpuTensor {
        GpuTensor {
            buffer: Rc::new(PooledBuffer {
                buffer: Some(buffer),
                free: Rc::clone(&self.free),
            }),
            rows,
            cols,
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
    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The same buffer read as `(rows, cols)` (the caller checked the size).
    pub(super) fn reshaped(&self, rows: usize, cols: usize) -> GpuTensor {
        GpuTensor {
            buffer: self.buffer.clone(),
            rows,
            cols,
        }
    }

    pub(super) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .buffer
            .as_ref()
            .expect("a live tensor holds its buffer")
    }
}

/// A weight matrix on the GPU, in its block format (see `quant_blocks.wgsl`).
///
/// Stored as one or more parts of whole rows: an adapter binds at most
/// `max_storage_buffer_binding_size` bytes of one buffer (128 MiB on many), and a large
/// vocabulary's embedding table (Gemma 3: 262,144 × 640 in Q6_K, 189 MB) is bigger than that.
/// Kernels run once per part and write their rows at the part's offset.
pub struct GpuMatrix {
    pub(super) parts: Vec<MatrixPart>,
    pub(super) ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub(super) row_words: usize,
}

/// Rows `first_row .. first_row + rows` of a [`GpuMatrix`], in one buffer.
pub(super) struct MatrixPart {
    pub(super) buffer: wgpu::Buffer,
    pub(super) first_row: usize,
    pub(super) rows: usize,
}

/// How many whole rows of `row_bytes` bytes fit in one part of at most `max_part_bytes` bytes.
pub(super) fn rows_per_part(row_bytes: usize, max_part_bytes: u64) -> usize {
    ((max_part_bytes / row_bytes.max(1) as u64) as usize).max(1)
}

/// One layer's keys and values: `(kv_heads, capacity, head_dim)` f32 each.
pub struct GpuCache {
    pub(super) keys: wgpu::Buffer,
    pub(super) values: wgpu::Buffer,
    pub(super) len: usize,
    pub(super) capacity: usize,
    pub(super) shape: AttentionShape,
}

impl GpuCache {
    /// What [`crate::backend::checks::attention`] needs to know.
    pub(super) fn state(&self) -> CacheState {
        CacheState {
            len: self.len,
            capacity: self.capacity,
            shape: self.shape,
        }
    }
}

/// Repacks GGUF blocks so every block starts on a 4-byte boundary (the layouts are documented
/// in `quant_blocks.wgsl`): Q4_0, Q5_0 and Q8_0 get two zero bytes after their f16 scale, Q6_K
/// two after the block; the other block types are aligned as stored. F16 and BF16 rows of odd
/// length would split a word between rows: they become F32.
pub(super) fn repack(info: &TensorInfo, bytes: Vec<u8>) -> (GgmlType, Vec<u8>) {
    // Blocks of `block` bytes with two zero bytes inserted at `at`.
    let padded = |block: usize, at: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() / block * (block + 2));
        for b in bytes.chunks_exact(block) {
            out.extend_from_slice(&b[..at]);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&b[at..]);
        }
        out
    };
    let ty = info.ggml_type;
    match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K | GgmlType::F32 => {
            (ty, bytes)
        }
        GgmlType::Q4_0 => (ty, padded(18, 2)),
        GgmlType::Q5_0 => (ty, padded(22, 2)),
        GgmlType::Q8_0 => (ty, padded(34, 2)),
        GgmlType::Q6K => (ty, padded(210, 210)),
        GgmlType::F16 | GgmlType::BF16 if info.dims[0].is_multiple_of(2) => (ty, bytes),
        GgmlType::F16 | GgmlType::BF16 => {
            let values = blocks::dequantize_to_vec(ty, &bytes);
            (GgmlType::F32, bytemuck::cast_slice(&values).to_vec())
        }
    }
}
