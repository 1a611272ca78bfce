// Attention, step 2 of 3: softmax of each score row in place. Hidden entries (-3e38) become
// exactly 0. One workgroup per row.

struct Meta {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>; // (rows, cols)

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn softmax_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let base = group.x * params.cols;
    var m = -3.0e38;
    for (var c = local; c < params.cols; c += 256u) {
        m = max(m, scores[base + c]);
    }
    partial[local] = m;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (local < stride) {
            partial[local] = max(partial[local], partial[local + stride]);
        }
        workgroupBarrier();
    }
    let row_max = partial[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var c = local; c < params.cols; c += 256u) {
        let s = scores[base + c];
        var e = 0.0;
        if (s > -1.0e38) {
            e = exp(s - row_max);
        }
        scores[base + c] = e;
        sum += e;
    }
    partial[local] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (local < stride) {
            partial[local] += partial[local + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    let inv = select(0.0, 1.0 / total, total > 0.0);
    for (var c = local; c < params.cols; c += 256u) {
        scores[base + c] *= inv;
    }
}
