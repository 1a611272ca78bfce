// GroupNorm over each row's `groups` consecutive feature groups, then a per-feature scale and
// shift: LayerNorm is one group, RetNet's per-head norm one group per head. The vision models'
// rows are short (d ≤ a few hundred), so one invocation normalises one (row, group) serially,
// in two passes like its CPU twin `cpu::group_norm_rows`.

struct Meta {
    rows: u32,
    cols: u32,
    groups: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (rows, cols)
@group(0) @binding(2) var<storage, read> weight: array<f32>;     // (cols)
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // (cols)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;    // (rows, cols)

// Dispatched over rows·groups invocations, 64 per workgroup, folded into y past the
// per-dimension limit.
@compute @workgroup_size(64)
fn group_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = gid.x + gid.y * n.x * 64u;
    if (i >= params.rows * params.groups) {
        return;
    }
    let size = params.cols / params.groups;
    let row = i / params.groups;
    let first = (i % params.groups) * size;
    let base = row * params.cols + first;
    var sum = 0.0;
    for (var c = 0u; c < size; c++) {
        sum += x[base + c];
    }
    let mean = sum / f32(size);
    var squares = 0.0;
    for (var c = 0u; c < size; c++) {
        let d = x[base + c] - mean;
        squares += d * d;
    }
    let inv = 1.0 / sqrt(squares / f32(size) + params.eps);
    for (var c = 0u; c < size; c++) {
        y[base + c] = (x[base + c] - mean) * inv * weight[first + c] + bias[first + c];
    }
}
