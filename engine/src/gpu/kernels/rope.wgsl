// Rotary position embedding of each head: on interleaved pairs (x[2i], x[2i+1]), GGUF's llama
// layout, or on halves (x[i], x[i + head_dim/2]), GPT-NeoX's and Gemma's. The angles come
// precomputed per token (cos, sin) from the CPU, which computes them the same way for both
// backends, so position ids may be anything (Set-Based Prompting).

struct Meta {
    tokens: u32,
    features: u32, // heads · head_dim
    head_dim: u32,
    halves: u32,   // 1: pairs (i, i + head_dim/2); 0: pairs (2i, 2i + 1)
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // (tokens, features)
@group(0) @binding(2) var<storage, read> angles: array<vec2<f32>>; // (tokens, head_dim / 2): (cos, sin)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;      // (tokens, features)

// One invocation per pair; dispatched as (ceil(features / 2 / 256), tokens, 1).
@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pair = gid.x;
    let t = gid.y;
    let half = params.head_dim / 2u;
    if (pair * 2u >= params.features || t >= params.tokens) {
        return;
    }
    let i = pair % half;
    let cs = angles[t * half + i];
    let head = t * params.features + (pair / half) * params.head_dim;
    var first = head + 2u * i;
    var second = first + 1u;
    if (params.halves == 1u) {
        first = head + i;
        second = first + half;
    }
    let a = x[first];
    let b = x[second];
    y[first] = a * cs.x - b * cs.y;
    y[second] = a * cs.y + b * cs.x;
}
