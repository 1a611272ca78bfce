//! Recording work: dispatches go into one command encoder (in one open compute pass where
//! possible), their uniforms and small inputs into an [`UploadArena`]; everything is submitted
//! when something is read back, the only time the CPU waits for the GPU.

use super::context::{padded_size, GpuContext, GpuError};
use super::kernels::meta::WgslMeta;
use super::kernels::{KernelId, PipelineCache};
use super::profiler::Profiler;
use crate::error::Result;
use std::cell::{Cell, RefCell};

/// Uniforms and small inputs (token ids, RoPE angles, masks) of the commands being recorded,
/// in a few big buffers written once before each submit. Each piece gets its own aligned slice,
/// so a later write cannot overwrite what an earlier recorded command will read (which
/// `queue.write_buffer` into a shared buffer would do: it runs before the whole submit).
pub(super) struct UploadArena {
    chunks: Vec<(wgpu::Buffer, Vec<u8>)>,
    current: usize,
    alignment: usize,
}

const ARENA_CHUNK: usize = 1 << 20;

/// A slice of the arena, to bind.
#[derive(Clone, Copy)]
pub(super) struct ArenaSlice {
    chunk: usize,
    offset: u64,
    size: u64,
}

impl UploadArena {
    fn new(ctx: &GpuContext) -> Self {
        let alignment = ctx
            .limits
            .min_uniform_buffer_offset_alignment
            .max(ctx.limits.min_storage_buffer_offset_alignment)
            .max(16) as usize;
        UploadArena {
            chunks: Vec::new(),
            current: 0,
            alignment,
        }
    }

    fn push(&mut self, ctx: &GpuContext, bytes: &[u8]) -> ArenaSlice {
        let size = bytes.len().max(16).div_ceil(16) * 16;
        let chunk_size = ARENA_CHUNK.max(size);
        loop {
            if self.current == self.chunks.len() {
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload arena"),
                    size: chunk_size as u64,
                    usage: wgpu::BufferUsages::UNIFORM
                        | wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.chunks.push((buffer, Vec::with_capacity(chunk_size)));
            }
            let (buffer, data) = &mut self.chunks[self.current];
            let offset = data.len().div_ceil(self.alignment) * self.alignment;
            if offset + size <= buffer.size() as usize {
                data.resize(offset, 0);
                data.extend_from_slice(bytes);
                data.resize(offset + size, 0);
                return ArenaSlice {
                    chunk: self.current,
                    offset: offset as u64,
                    size: size as u64,
                };
            }
            self.current += 1;
        }
    }

    fn buffer(&self, chunk: usize) -> &wgpu::Buffer {
        &self.chunks[chunk].0
    }

    /// Writes what was pushed since the last flush; call right before submitting.
    fn flush(&mut self, ctx: &GpuContext) {
        for (buffer, data) in self.chunks.iter_mut().take(self.current + 1) {
            if !data.is_empty() {
                ctx.queue.write_buffer(buffer, 0, data);
                data.clear();
            }
        }
        self.current = 0;
    }
}

/// What a dispatch binds at one binding: a whole buffer, or a slice of the upload arena.
pub(super) enum Arg<'a> {
    Buffer(&'a wgpu::Buffer),
    Arena(ArenaSlice),
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

/// How much work went to the GPU: command buffers submitted and dispatches recorded, since
/// the backend was made (a decode step should be one submit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkCounts {
    pub submits: u64,
    pub dispatches: u64,
}

/// The device and the work recorded for it but not yet submitted.
pub(super) struct Recorder {
    ctx: GpuContext,
    pipelines: PipelineCache,
    recording: RefCell<Recording>,
    profiler: RefCell<Option<Profiler>>,
    counts: Cell<WorkCounts>,
}

impl Recorder {
    pub(super) fn new(ctx: GpuContext) -> Self {
        let arena = UploadArena::new(&ctx);
        Recorder {
            ctx,
            pipelines: PipelineCache::default(),
            recording: RefCell::new(Recording {
                encoder: None,
                pass: None,
                arena,
            }),
            profiler: RefCell::new(None),
            counts: Cell::new(WorkCounts::default()),
        }
    }

    pub(super) fn work_counts(&self) -> WorkCounts {
        self.counts.get()
    }

    fn count(&self, update: impl FnOnce(&mut WorkCounts)) {
        let mut counts = self.counts.get();
        update(&mut counts);
        self.counts.set(counts);
    }

    pub(super) fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Starts timing each kernel family; false where the adapter has no timestamp queries.
    pub(super) fn enable_profiling(&self) -> bool {
        let profiler = Profiler::new(&self.ctx);
        let enabled = profiler.is_some();
        if enabled {
            *self.profiler.borrow_mut() = profiler;
        }
        enabled
    }

    /// Milliseconds and dispatch counts per kernel family since profiling started.
    pub(super) fn kernel_times(&self) -> Vec<(&'static str, f64, u64)> {
        self.profiler
            .borrow()
            .as_ref()
            .map_or_else(Vec::new, Profiler::times)
    }

    /// Puts `bytes` in the upload arena, for a command recorded next to bind.
    pub(super) fn upload(&self, bytes: &[u8]) -> ArenaSlice {
        self.recording.borrow_mut().arena.push(&self.ctx, bytes)
    }

    /// Uploads a kernel's `Meta` uniform.
    pub(super) fn upload_meta<M: WgslMeta>(&self, meta: &M) -> ArenaSlice {
        self.upload(bytemuck::bytes_of(meta))
    }

    /// Records a copy between buffers (closing the open compute pass).
    pub(super) fn copy(
        &self,
        source: &wgpu::Buffer,
        source_offset: u64,
        destination: &wgpu::Buffer,
        destination_offset: u64,
        bytes: u64,
    ) {
        self.recording
            .borrow_mut()
            .encoder(&self.ctx)
            .copy_buffer_to_buffer(
                source,
                source_offset,
                destination,
                destination_offset,
                bytes,
            );
    }

    /// Records one dispatch of `kernel` with `args` bound in order.
    pub(super) fn dispatch(&self, kernel: KernelId, args: &[Arg<'_>], groups: (u32, u32, u32)) {
        let pipeline = self.pipelines.get(&self.ctx, kernel);
        self.count(|c| c.dispatches += 1);
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
            let timestamp_writes = p.timestamp_writes(kernel.family());
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

    /// Submits everything recorded, with `copies` (source, offset, bytes) read back; returns
    /// the bytes.
    pub(super) async fn submit_and_read(
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
                let size = padded_size(bytes);
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
        let timings = self
            .profiler
            .borrow_mut()
            .as_mut()
            .and_then(|p| p.resolve(&self.ctx, &mut encoder));
        self.ctx.queue.submit([encoder.finish()]);
        self.count(|c| c.submits += 1);
        let mut out = Vec::with_capacity(staging.len());
        for (buffer, bytes) in &staging {
            out.push(self.map(buffer, *bytes).await?);
        }
        if let Some((buffer, families)) = timings {
            let raw = self.map(&buffer, families.len() * 16).await?;
            let period = self.ctx.queue.get_timestamp_period() as f64;
            if let Some(p) = self.profiler.borrow_mut().as_mut() {
                p.record(period, &raw, &families);
            }
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
}
