//! Multi-head causal retention (RetNet, Sun et al. 2023, arXiv 2307.08621; used by ViR,
//! arXiv 2310.19731) in its three forms, on host slices. These are the CPU backend's retention
//! and the twins the WebGPU kernels in `gpu/kernels/retention.wgsl` are tested against.
//!
//! Per head with decay γ and `s = 1/√d_head`:
//! - parallel: `O = ((Q Kᵀ s) ⊙ D) V`, `D[n, m] = γ^(n−m)` for `n ≥ m`, else 0;
//! - recurrent: `S_n = γ S_{n−1} + K_nᵀ V_n`, `o_n = s Q_n S_n`;
//! - chunkwise (chunk B, a short last chunk uses its own length b):
//!   `R_i = K_[i]ᵀ (V_[i] ⊙ ζ) + γ^b R_{i−1}`, `ζ_j = γ^(b−j−1)`;
//!   `O_[i] = ((Q_[i] K_[i]ᵀ s) ⊙ D) V_[i] + s (Q_[i] R_{i−1}) ⊙ ξ`, `ξ_j = γ^(j+1)`.
//!
//! Unlike ViR's released `parallel()`, there is no softmax: that would break the equality with
//! the recurrent form, which is the point of retention.
//!
//! Layout: `q`, `k`, `v` and the output are `(t, heads·d_head)` row-major.

/// The score matrix `(Q Kᵀ s) ⊙ D` of every head: `(heads·t, t)`, head-major.
pub fn scores(q: &[f32], k: &[f32], t: usize, head_dim: usize, decays: &[f32]) -> Vec<f32> {
    let width = decays.len() * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0; decays.len() * t * t];
    for (h, &gamma) in decays.iter().enumerate() {
        let col = h * head_dim;
        for n in 0..t {
            let qn = &q[n * width + col..][..head_dim];
            for m in 0..=n {
                let km = &k[m * width + col..][..head_dim];
                out[(h * t + n) * t + m] = dot(qn, km) * scale * gamma.powi((n - m) as i32);
            }
        }
    }
    out
}

/// The parallel form: the score matrix times `V`.
pub fn parallel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    head_dim: usize,
    decays: &[f32],
) -> Vec<f32> {
    let width = decays.len() * head_dim;
    let scores = scores(q, k, t, head_dim, decays);
    let mut out = vec![0.0; t * width];
    for h in 0..decays.len() {
        let col = h * head_dim;
        for n in 0..t {
            let row = &scores[(h * t + n) * t..][..t];
            let o = &mut out[n * width + col..][..head_dim];
            for (m, &w) in row.iter().enumerate().take(n + 1) {
                axpy(o, w, &v[m * width + col..][..head_dim]);
            }
        }
    }
    out
}

/// The recurrent form: one token at a time against a `(d_head, d_head)` state per head.
pub fn recurrent(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    head_dim: usize,
    decays: &[f32],
) -> Vec<f32> {
    let width = decays.len() * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0; t * width];
    for (h, &gamma) in decays.iter().enumerate() {
        let col = h * head_dim;
        let mut state = vec![0.0f32; head_dim * head_dim]; // (d_k, d_v)
        for n in 0..t {
            let (qn, kn, vn) = (
                &q[n * width + col..][..head_dim],
                &k[n * width + col..][..head_dim],
                &v[n * width + col..][..head_dim],
            );
            for (i, &ki) in kn.iter().enumerate() {
                let row = &mut state[i * head_dim..][..head_dim];
                for (s, &vj) in row.iter_mut().zip(vn) {
                    *s = gamma * *s + ki * vj;
                }
            }
            let o = &mut out[n * width + col..][..head_dim];
            for (i, &qi) in qn.iter().enumerate() {
                axpy(o, qi * scale, &state[i * head_dim..][..head_dim]);
            }
        }
    }
    out
}

/// The chunkwise form: parallel inside each chunk of `chunk` tokens, recurrent across chunks.
pub fn chunkwise(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    head_dim: usize,
    decays: &[f32],
    chunk: usize,
) -> Vec<f32> {
    let chunk = chunk.max(1);
    let width = decays.len() * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0; t * width];
    for (h, &gamma) in decays.iter().enumerate() {
        let col = h * head_dim;
        let mut state = vec![0.0f32; head_dim * head_dim]; // R_{i−1}: (d_k, d_v)
        for start in (0..t).step_by(chunk) {
            let b = chunk.min(t - start);
            for j in 0..b {
                let n = start + j;
                let o = &mut out[n * width + col..][..head_dim];
                // Inside the chunk: the parallel form.
                for m in start..=n {
                    let w = dot(
                        head_row(q, n, width, col, head_dim),
                        head_row(k, m, width, col, head_dim),
                    ) * scale
                        * gamma.powi((n - m) as i32);
                    axpy(o, w, head_row(v, m, width, col, head_dim));
                }
                // Everything before the chunk, through the state.
                let xi = gamma.powi(j as i32 + 1) * scale;
                for (i, &qi) in head_row(q, n, width, col, head_dim).iter().enumerate() {
                    axpy(o, qi * xi, &state[i * head_dim..][..head_dim]);
                }
            }
            let carry = gamma.powi(b as i32);
            for s in state.iter_mut() {
                *s *= carry;
            }
            for j in 0..b {
                let m = start + j;
                let zeta = gamma.powi((b - j - 1) as i32);
                for (i, &ki) in head_row(k, m, width, col, head_dim).iter().enumerate() {
                    axpy(
                        &mut state[i * head_dim..][..head_dim],
                        ki * zeta,
                        head_row(v, m, width, col, head_dim),
                    );
                }
            }
        }
    }
    out
}

/// The floats each form holds at once for `t` tokens and `heads` heads: parallel the score
/// matrices, recurrent one state per head, chunkwise a chunk's scores and the state.
pub fn working_floats(
    form: crate::backend::RetentionForm,
    t: usize,
    heads: usize,
    head_dim: usize,
) -> usize {
    use crate::backend::RetentionForm::*;
    match form {
        Parallel => heads * t * t,
        Recurrent => heads * head_dim * head_dim,
        Chunkwise(b) => heads * (b.min(t) * b.min(t) + head_dim * head_dim),
    }
}

/// Token `n`'s slice of the head starting at feature `col`.
fn head_row(x: &[f32], n: usize, width: usize, col: usize, head_dim: usize) -> &[f32] {
    &x[n * width + col..][..head_dim]
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(out: &mut [f32], a: f32, x: &[f32]) {
    for (o, &xi) in out.iter_mut().zip(x) {
        *o += a * xi;
    }
}
