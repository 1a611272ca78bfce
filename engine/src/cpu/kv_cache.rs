//! One layer's key/value cache on the CPU: appended to as tokens are fed, kept in part (and its
//! kept keys turned) by the attention policies.

use crate::backend::checks::CacheState;
use crate::backend::{AttentionShape, RopeStyle};
use crate::error::{Error, Result};

/// One layer's keys and values: `(kv_heads, capacity, head_dim)` each, row-major.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
    pub len: usize,
    pub capacity: usize,
    pub shape: AttentionShape,
}

impl KvCache {
    pub fn new(shape: AttentionShape, capacity: usize) -> Result<Self> {
        let n = shape
            .n_kv_heads
            .checked_mul(capacity)
            .and_then(|n| n.checked_mul(shape.head_dim))
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "a KV cache of {capacity} positions for {shape:?} does not fit in memory"
                ))
            })?;
        Ok(KvCache {
            keys: vec![0.0; n],
            values: vec![0.0; n],
            len: 0,
            capacity,
            shape,
        })
    }

    /// What [`crate::backend::checks::attention`] needs to know.
    pub fn state(&self) -> CacheState {
        CacheState {
            len: self.len,
            capacity: self.capacity,
            shape: self.shape,
        }
    }

    /// Appends `k`, `v` of `t` new tokens, each `(t, kv_heads·head_dim)`; the caller has checked
    /// the shapes and the room left ([`crate::backend::checks::attention`]).
    pub fn append(&mut self, k: &[f32], v: &[f32], t: usize) {
        let AttentionShape {
            n_kv_heads,
            head_dim,
            ..
        } = self.shape;
        for i in 0..t {
            for g in 0..n_kv_heads {
                let src = i * n_kv_heads * head_dim + g * head_dim;
                let dst = (g * self.capacity + self.len + i) * head_dim;
                self.keys[dst..dst + head_dim].copy_from_slice(&k[src..src + head_dim]);
                self.values[dst..dst + head_dim].copy_from_slice(&v[src..src + head_dim]);
            }
        }
        self.len += t;
    }

    /// Moves rows `keep` to the front in order and turns each kept key by its `angles` row
    /// (`head_dim / 2` pairs of (cos, sin), pairs chosen by `style`); the caller has checked
    /// that `keep` ascends below the length ([`crate::backend::checks::cache_keep`]). The CPU
    /// twin of the WebGPU `kv_keep` kernel.
    pub fn keep(&mut self, keep: &[usize], angles: &[[f32; 2]], style: RopeStyle) {
        let d = self.shape.head_dim;
        let half = d / 2;
        for g in 0..self.shape.n_kv_heads {
            // Slots ascend, so a row only ever moves down onto one already moved or dropped.
            for (i, &slot) in keep.iter().enumerate() {
                let (src, dst) = ((g * self.capacity + slot) * d, (g * self.capacity + i) * d);
                self.keys.copy_within(src..src + d, dst);
                self.values.copy_within(src..src + d, dst);
                let key = &mut self.keys[dst..dst + d];
                for (p, [cos, sin]) in angles[i * half..(i + 1) * half].iter().enumerate() {
                    let (first, second) = match style {
                        RopeStyle::Interleaved => (2 * p, 2 * p + 1),
                        RopeStyle::Halves => (p, p + half),
                    };
                    let (a, b) = (key[first], key[second]);
                    key[first] = a * cos - b * sin;
                    key[second] = a * sin + b * cos;
                }
            }
        }
        self.len = keep.len();
    }

    pub(super) fn key(&self, g: usize, j: usize) -> &[f32] {
        let d = self.shape.head_dim;
        let at = (g * self.capacity + j) * d;
        &self.keys[at..at + d]
    }

    pub(super) fn value(&self, g: usize, j: usize) -> &[f32] {
        let d = self.shape.head_dim;
        let at = (g * self.capacity + j) * d;
        &self.values[at..at + d]
    }
}
