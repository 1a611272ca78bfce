//! Per-kernel-family GPU time from timestamp queries (used by `glassbox bench`): each timed
//! dispatch gets a pass of its own with a timestamp at either end, resolved at the next submit.

use super::context::GpuContext;
use super::kernels::Family;
use std::collections::HashMap;

pub(super) struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    /// Family of each recorded pass, in query-pair order.
    passes: Vec<Family>,
    totals: HashMap<Family, (f64, u64)>,
}

impl Profiler {
    /// None where the adapter has no timestamp queries.
    pub(super) fn new(ctx: &GpuContext) -> Option<Self> {
        if !ctx.timestamps {
            return None;
        }
        let capacity = 4096; // the most one query set may hold
        let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel timings"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel timings"),
            size: capacity as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Profiler {
            queries,
            resolve,
            capacity,
            passes: Vec::new(),
            totals: HashMap::new(),
        })
    }

    /// The timestamps for the next pass, of `family`; none once the query set is full (the
    /// pass then runs untimed until the next submit frees the set).
    pub(super) fn timestamp_writes(
        &mut self,
        family: Family,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let pair = self.passes.len() as u32;
        (2 * pair + 2 <= self.capacity).then(|| {
            self.passes.push(family);
            wgpu::ComputePassTimestampWrites {
                query_set: &self.queries,
                beginning_of_pass_write_index: Some(2 * pair),
                end_of_pass_write_index: Some(2 * pair + 1),
            }
        })
    }

    /// Records the copy of this submit's timestamps into a buffer to map, with the family of
    /// each pair; None if nothing was timed.
    pub(super) fn resolve(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Option<(wgpu::Buffer, Vec<Family>)> {
        if self.passes.is_empty() {
            return None;
        }
        let families = std::mem::take(&mut self.passes);
        let count = 2 * families.len() as u32;
        encoder.resolve_query_set(&self.queries, 0..count, &self.resolve, 0);
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timings read back"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &staging, 0, count as u64 * 8);
        Some((staging, families))
    }

    /// Adds the timestamps read back (`raw`, a pair per family) to the totals.
    pub(super) fn record(&mut self, period_ns: f64, raw: &[u8], families: &[Family]) {
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(raw);
        for (i, family) in families.iter().enumerate() {
            let (begin, end) = (stamps[2 * i], stamps[2 * i + 1]);
            let ms = end.saturating_sub(begin) as f64 * period_ns / 1e6;
            let entry = self.totals.entry(*family).or_insert((0.0, 0));
            entry.0 += ms;
            entry.1 += 1;
        }
    }

    /// Milliseconds and dispatch counts per family, slowest first.
    pub(super) fn times(&self) -> Vec<(&'static str, f64, u64)> {
        let mut out: Vec<_> = self
            .totals
            .iter()
            .map(|(family, (ms, n))| (family.name(), *ms, *n))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}
