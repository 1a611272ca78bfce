// Element-wise ops on f32 vectors: residual adds, scaling, the SwiGLU and GeGLU gates, GELU,
// and the per-column affine map that interventions use.

struct Meta {
    n: u32,      // number of elements
    factor: f32, // `scale` only
    cols: u32,   // `column_affine` only: the row width of a
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> a: array<f32>;         // (n)
@group(0) @binding(2) var<storage, read> b: array<f32>;         // (n)
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // (n)

// Dispatched as (ceil(n / 256), 1, 1), or 2-D past the per-dimension workgroup limit: the
// linear index folds y into x.
fn index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// out = a + b
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if (i >= params.n) {
        return;
    }
    out[i] = a[i] + b[i];
}

// out = silu(a) * b, with a the gate and b the up projection.
@compute @workgroup_size(256)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if (i >= params.n) {
        return;
    }
    let g = a[i];
    out[i] = g / (1.0 + exp(-g)) * b[i];
}

// out = a · factor; b is not read.
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if (i >= params.n) {
        return;
    }
    out[i] = a[i] * params.factor;
}

// out = a · b[col] + b[cols + col], per column: b is (2, cols), scales then shifts.
@compute @workgroup_size(256)
fn column_affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if (i >= params.n) {
        return;
    }
    let col = i % params.cols;
    out[i] = a[i] * b[col] + b[params.cols + col];
}

// out = gelu(a), tanh approximation; b is not read. The tanh argument is clamped because some
// WGSL implementations compute tanh through exp and overflow to NaN for large inputs; tanh is
// ±1 to f32 precision well before ±10.
@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if (i >= params.n) {
        return;
    }
    let x = a[i];
    let inner = clamp(0.7978846 * x * (1.0 + 0.044715 * x * x), -10.0, 10.0);
    out[i] = 0.5 * x * (1.0 + tanh(inner));
}

// out = gelu(a) * b (GeGLU), with a the gate and b the up projection; GELU as in `gelu`.
@compute @workgroup_size(256)
fn gelu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if (i >= params.n) {
        return;
    }
    let x = a[i];
    let inner = clamp(0.7978846 * x * (1.0 + 0.044715 * x * x), -10.0, 10.0);
    out[i] = 0.5 * x * (1.0 + tanh(inner)) * b[i];
}
