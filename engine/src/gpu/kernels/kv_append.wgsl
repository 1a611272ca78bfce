// Appends new keys and values to a layer's cache: (tokens, kv_heads · head_dim) rows go to
// (kv_heads, capacity, head_dim) at positions start..start + tokens.

struct Meta {
    tokens: u32,
    kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    start: u32, // cached length before this append
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> k_new: array<f32>;          // (tokens, kv_heads · head_dim)
@group(0) @binding(2) var<storage, read> v_new: array<f32>;          // (tokens, kv_heads · head_dim)
@group(0) @binding(3) var<storage, read_write> keys: array<f32>;     // (kv_heads, capacity, head_dim)
@group(0) @binding(4) var<storage, read_write> values: array<f32>;   // (kv_heads, capacity, head_dim)

// One invocation per new element; dispatched as (ceil(kv_heads · head_dim / 256), tokens, 1).
@compute @workgroup_size(256)
fn kv_append(@builtin(global_invocation_id) gid: vec3<u32>) {
    let width = params.kv_heads * params.head_dim;
    let e = gid.x;
    let t = gid.y;
    if (e >= width || t >= params.tokens) {
        return;
    }
    let g = e / params.head_dim;
    let dim = e % params.head_dim;
    let dst = (g * params.capacity + params.start + t) * params.head_dim + dim;
    keys[dst] = k_new[t * width + e];
    values[dst] = v_new[t * width + e];
}
