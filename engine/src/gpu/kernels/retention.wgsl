// Multi-head causal retention (RetNet / ViR) in its three forms; the CPU twins are in
// `cpu/retention.rs`, which also states the formulas. Per head h with decay γ = decays[h] and
// s = 1/√d_head, every form computes o_n = Σ_{m ≤ n} s (q_n · k_m) γ^(n−m) v_m.
//
// Layout: q, k, v and the output are (t, heads·d_head) row-major; scores (heads·t, t).
// The recurrent and chunkwise kernels give one invocation a whole value column (h, j) for every
// token: its column of the state, R[·][j], lives in private memory, so no invocation waits for
// another. d_head is at most 64 (checked by the backend).

struct Meta {
    t: u32,
    heads: u32,
    head_dim: u32,
    chunk: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> q: array<f32>;            // (t, heads·d_head)
@group(0) @binding(2) var<storage, read> k: array<f32>;            // (t, heads·d_head)
@group(0) @binding(3) var<storage, read> v: array<f32>;            // (t, heads·d_head)
@group(0) @binding(4) var<storage, read> decays: array<f32>;       // (heads)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // output or scores
@group(0) @binding(6) var<storage, read> scores_in: array<f32>;    // (heads·t, t), parallel_values

const MAX_HEAD_DIM: u32 = 64u;

fn width() -> u32 {
    return params.heads * params.head_dim;
}

// q_n · k_m within head h.
fn qk(n: u32, m: u32, h: u32) -> f32 {
    let qn = n * width() + h * params.head_dim;
    let km = m * width() + h * params.head_dim;
    var acc = 0.0;
    for (var i = 0u; i < params.head_dim; i++) {
        acc += q[qn + i] * k[km + i];
    }
    return acc;
}

fn decay_pow(h: u32, e: u32) -> f32 {
    return pow(decays[h], f32(e));
}

// Parallel form, step 1: scores[h·t + n][m] = s (q_n · k_m) γ^(n−m) for m ≤ n, else 0.
// Dispatched as (ceil(t / 64), t, heads).
@compute @workgroup_size(64)
fn parallel_scores(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    let n = gid.y;
    let h = gid.z;
    if (m >= params.t) {
        return;
    }
    var score = 0.0;
    if (m <= n) {
        score = qk(n, m, h) * params.scale * decay_pow(h, n - m);
    }
    out[(h * params.t + n) * params.t + m] = score;
}

// Parallel form, step 2: o_n = Σ_m scores[n][m] v_m. One invocation per output element,
// dispatched over t·heads·d_head invocations (folded into y past the per-dimension limit).
@compute @workgroup_size(64)
fn parallel_values(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    if (i >= params.t * width()) {
        return;
    }
    let n = i / width();
    let c = i % width();
    let h = c / params.head_dim;
    let row = (h * params.t + n) * params.t;
    var acc = 0.0;
    for (var m = 0u; m <= n; m++) {
        acc += scores_in[row + m] * v[m * width() + c];
    }
    out[i] = acc;
}

// Recurrent form: S_n = γ S_{n−1} + k_nᵀ v_n, o_n = s q_n S_n. One invocation per value column.
@compute @workgroup_size(64)
fn recurrent(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= width()) {
        return;
    }
    let h = c / params.head_dim;
    let gamma = decays[h];
    var state: array<f32, MAX_HEAD_DIM>;
    for (var n = 0u; n < params.t; n++) {
        let base = n * width() + h * params.head_dim;
        let vn = v[n * width() + c];
        var o = 0.0;
        for (var i = 0u; i < params.head_dim; i++) {
            state[i] = gamma * state[i] + k[base + i] * vn;
            o += q[base + i] * state[i];
        }
        out[n * width() + c] = o * params.scale;
    }
}

// Chunkwise form: the parallel form inside each chunk, the state R across chunks.
// R_i = γ^b R_{i−1} + Σ_j γ^(b−j−1) k_jᵀ v_j; o_j = inner_j + s γ^(j+1) q_j R_{i−1}.
@compute @workgroup_size(64)
fn chunkwise(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= width()) {
        return;
    }
    let h = c / params.head_dim;
    let head = h * params.head_dim;
    var state: array<f32, MAX_HEAD_DIM>;
    for (var start = 0u; start < params.t; start += params.chunk) {
        let b = min(params.chunk, params.t - start);
        for (var j = 0u; j < b; j++) {
            let n = start + j;
            var acc = 0.0;
            for (var m = start; m <= n; m++) {
                acc += qk(n, m, h) * params.scale * decay_pow(h, n - m) * v[m * width() + c];
            }
            var cross = 0.0;
            for (var i = 0u; i < params.head_dim; i++) {
                cross += q[n * width() + head + i] * state[i];
            }
            out[n * width() + c] = acc + cross * params.scale * decay_pow(h, j + 1u);
        }
        let carry = decay_pow(h, b);
        for (var i = 0u; i < params.head_dim; i++) {
            state[i] *= carry;
        }
        for (var j = 0u; j < b; j++) {
            let m = start + j;
            let zeta = decay_pow(h, b - j - 1u);
            let vm = v[m * width() + c];
            for (var i = 0u; i < params.head_dim; i++) {
                state[i] += k[m * width() + head + i] * zeta * vm;
            }
        }
    }
}
