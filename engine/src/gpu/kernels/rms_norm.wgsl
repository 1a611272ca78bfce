// RMSNorm: y = x / sqrt(mean(x²) + eps) · weight, per row. One workgroup per row.

struct Meta {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (rows, cols)
@group(0) @binding(2) var<storage, read> gain: array<f32>;       // (cols)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (rows, cols)

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group.x;
    let base = row * params.cols;
    var sum = 0.0;
    for (var c = local; c < params.cols; c += 256u) {
        let v = x[base + c];
        sum += v * v;
    }
    partial[local] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (local < stride) {
            partial[local] += partial[local + stride];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(partial[0] / f32(params.cols) + params.eps);
    for (var c = local; c < params.cols; c += 256u) {
        y[base + c] = x[base + c] * scale * gain[c];
    }
}
