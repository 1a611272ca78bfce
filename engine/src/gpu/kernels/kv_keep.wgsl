// Keeps chosen rows of a layer's cache (an attention policy evicting tokens): kept row i comes
// from slot sources[i] of a copy of the cache, its key turned by RoPE through the angles of
// its position shift (pairs as in rope.wgsl), its value as it was. CPU twin: `KvCache::keep`.

struct Meta {
    kept: u32,
    kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    halves: u32, // 1: pairs (i, i + head_dim/2); 0: pairs (2i, 2i + 1)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> old_keys: array<f32>;       // (kv_heads, capacity, head_dim)
@group(0) @binding(2) var<storage, read> old_values: array<f32>;     // (kv_heads, capacity, head_dim)
@group(0) @binding(3) var<storage, read> sources: array<u32>;        // (kept): the slot each row comes from
@group(0) @binding(4) var<storage, read> angles: array<vec2<f32>>;   // (kept, head_dim / 2): (cos, sin)
@group(0) @binding(5) var<storage, read_write> keys: array<f32>;     // (kv_heads, capacity, head_dim)
@group(0) @binding(6) var<storage, read_write> values: array<f32>;   // (kv_heads, capacity, head_dim)

// One invocation per pair of a kept row of a head; dispatched as
// (ceil(kv_heads · head_dim / 2 / 256), kept, 1).
@compute @workgroup_size(256)
fn kv_keep(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = params.head_dim / 2u;
    let e = gid.x;
    let row = gid.y;
    if (e >= params.kv_heads * half || row >= params.kept) {
        return;
    }
    let g = e / half;
    let i = e % half;
    let src = (g * params.capacity + sources[row]) * params.head_dim;
    let dst = (g * params.capacity + row) * params.head_dim;
    var first = 2u * i;
    var second = first + 1u;
    if (params.halves == 1u) {
        first = i;
        second = i + half;
    }
    let cs = angles[row * half + i];
    let a = old_keys[src + first];
    let b = old_keys[src + second];
    keys[dst + first] = a * cs.x - b * cs.y;
    keys[dst + second] = a * cs.y + b * cs.x;
    values[dst + first] = old_values[src + first];
    values[dst + second] = old_values[src + second];
}
