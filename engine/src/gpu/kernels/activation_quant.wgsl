// 8-bit activations, simulated: each row's blocks of 32 columns rounded to 8 bits with one
// scale per block (amax / 127, as llama.cpp's Q8_0 activations), except the outlier columns,
// those whose largest |value| over all rows reaches the threshold, which stay as they were
// (LLM.int8's mixed-precision decomposition). CPU twin: `cpu::ops::quantize_activations_8bit`.

struct Meta {
    rows: u32,
    cols: u32,
    threshold: f32,    // outlier columns reach it
    keep_outliers: u32, // 0: every column is rounded
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (rows, cols)
@group(0) @binding(2) var<storage, read_write> outlier: array<u32>; // (cols): 1 = kept wide
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // (rows, cols)

// One invocation per column; dispatched as (ceil(cols / 256), 1, 1).
@compute @workgroup_size(256)
fn outlier_columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if (col >= params.cols) {
        return;
    }
    var largest = 0.0;
    for (var r = 0u; r < params.rows; r++) {
        largest = max(largest, abs(x[r * params.cols + col]));
    }
    outlier[col] = select(0u, 1u, params.keep_outliers == 1u && largest >= params.threshold);
}

// Half away from zero, as C's roundf (WGSL's round() goes to even).
fn round_away(v: f32) -> f32 {
    return sign(v) * floor(abs(v) + 0.5);
}

// One invocation per block of a row; dispatched as (ceil(cols / 32 / 256), rows, 1).
@compute @workgroup_size(256)
fn quantize_blocks(@builtin(global_invocation_id) gid: vec3<u32>) {
    let block = gid.x;
    let row = gid.y;
    let first = block * 32u;
    if (first >= params.cols || row >= params.rows) {
        return;
    }
    let last = min(first + 32u, params.cols);
    let base = row * params.cols;
    var amax = 0.0;
    for (var c = first; c < last; c++) {
        if (outlier[c] == 0u) {
            amax = max(amax, abs(x[base + c]));
        }
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    for (var c = first; c < last; c++) {
        let v = x[base + c];
        y[base + c] = select(round_away(v * id) * d, v, outlier[c] == 1u);
    }
}
