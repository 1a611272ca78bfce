// Attention, step 3 of 3: out = probabilities · values, per head.

struct Meta {
    tokens: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    total: u32,
    capacity: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> probs: array<f32>;        // (heads, tokens, total)
@group(0) @binding(2) var<storage, read> values: array<f32>;       // (kv_heads, capacity, head_dim)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;    // (tokens, heads · head_dim)

// One invocation per output element; dispatched as (ceil(head_dim / 64), tokens, heads).
@compute @workgroup_size(64)
fn values_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let d = gid.x;
    let i = gid.y;
    let h = gid.z;
    if (d >= params.head_dim || i >= params.tokens) {
        return;
    }
    let g = h / (params.heads / params.kv_heads);
    let p_at = (h * params.tokens + i) * params.total;
    var acc = 0.0;
    for (var j = 0u; j < params.total; j++) {
        let p = probs[p_at + j];
        if (p > 0.0) {
            acc += p * values[(g * params.capacity + j) * params.head_dim + d];
        }
    }
    out[(i * params.heads + h) * params.head_dim + d] = acc;
}
