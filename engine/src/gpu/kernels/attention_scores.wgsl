// Attention, step 1 of 3: scaled scores q·k / sqrt(head_dim) of the new queries against every
// cached key, -inf where the mask hides the key. Query head h reads key/value head
// h / (heads / kv_heads) (grouped-query attention).

struct Meta {
    tokens: u32,    // new queries
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    total: u32,     // cached keys, the new ones included
    capacity: u32,
    causal: u32,    // 1: query i sees keys 0 ..= total - tokens + i; 0: read `mask`
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> q: array<f32>;              // (tokens, heads · head_dim)
@group(0) @binding(2) var<storage, read> keys: array<f32>;           // (kv_heads, capacity, head_dim)
@group(0) @binding(3) var<storage, read> mask: array<u32>;           // (tokens · total) bits, row-major
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;   // (heads, tokens, total)

fn visible(i: u32, j: u32) -> bool {
    if (params.causal == 1u) {
        return j <= params.total - params.tokens + i;
    }
    let bit = i * params.total + j;
    return ((mask[bit / 32u] >> (bit % 32u)) & 1u) == 1u;
}

// One invocation per (key, query, head); dispatched as (ceil(total / 256), tokens, heads).
@compute @workgroup_size(256)
fn scores_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    let h = gid.z;
    if (j >= params.total || i >= params.tokens) {
        return;
    }
    let out = (h * params.tokens + i) * params.total + j;
    if (!visible(i, j)) {
        scores[out] = -3.0e38; // -inf stand-in: WGSL has no infinity literal
        return;
    }
    let g = h / (params.heads / params.kv_heads);
    let q_at = (i * params.heads + h) * params.head_dim;
    let k_at = (g * params.capacity + j) * params.head_dim;
    var dot = 0.0;
    for (var d = 0u; d < params.head_dim; d++) {
        dot += q[q_at + d] * keys[k_at + d];
    }
    scores[out] = dot * params.scale;
}
