// Quantized matrix products y = x · Wᵀ: W (rows, cols) in a block format (quant_blocks.wgsl),
// x (tokens, cols) f32, y (tokens, rows) f32. Weights are dequantized on the fly and all
// arithmetic is f32: the activations are never quantized. A large matrix comes in parts of
// whole rows (one dispatch each): `w` holds the part's rows, written to y at `row_offset`.

struct Meta {
    rows: u32,       // rows of this part of W
    cols: u32,
    tokens: u32,
    row_words: u32,  // u32 words per weight row
    out_rows: u32,   // rows of the whole W: the width of y
    row_offset: u32, // where this part's first row goes in y
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> w: array<u32>;          // (rows, row_words)
@group(0) @binding(2) var<storage, read> x: array<f32>;          // (tokens, cols)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (tokens, out_rows)

const ROWS_PER_GROUP: u32 = 8u;
const LANES: u32 = 32u;
var<workgroup> partial: array<f32, 256>;

// Matrix × vector (decode). 256 invocations = 8 rows × 32 lanes; the lanes of a row share its
// units (8 weights each) and reduce through workgroup memory. Dispatched as
// (ceil(rows / 8), tokens, 1): one token per y, so small batches work too.
@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group.x * ROWS_PER_GROUP + local / LANES;
    let lane = local % LANES;
    let t = group.y;
    var acc = 0.0;
    if (row < params.rows) {
        let units = (params.cols / COLS_PER_UNIT_BLOCK) * UNITS_PER_BLOCK;
        for (var unit = lane; unit < units; unit += LANES) {
            acc += unit_dot(row, unit, t * params.cols);
        }
        // Float rows whose length is not a multiple of a unit: the last columns one by one.
        let tail = units / UNITS_PER_BLOCK * COLS_PER_UNIT_BLOCK;
        for (var col = tail + lane; col < params.cols; col += LANES) {
            acc += weight(row, col) * x[t * params.cols + col];
        }
    }
    partial[local] = acc;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            partial[local] += partial[local + stride];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < params.rows) {
        y[t * params.out_rows + params.row_offset + row] = partial[local];
    }
}

// Matrix × vector with one invocation per row and no barriers: what CPU implementations of
// WebGPU (lavapipe, SwiftShader) run fastest, each SIMD lane streaming its own row.
// Dispatched as (ceil(rows / 64), tokens, 1).
@compute @workgroup_size(64)
fn matvec_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let t = gid.y;
    if (row >= params.rows) {
        return;
    }
    let units = (params.cols / COLS_PER_UNIT_BLOCK) * UNITS_PER_BLOCK;
    var acc = 0.0;
    for (var unit = 0u; unit < units; unit++) {
        acc += unit_dot(row, unit, t * params.cols);
    }
    for (var col = units / UNITS_PER_BLOCK * COLS_PER_UNIT_BLOCK; col < params.cols; col++) {
        acc += weight(row, col) * x[t * params.cols + col];
    }
    y[t * params.out_rows + params.row_offset + row] = acc;
}

// Matrix × matrix (prefill): a 32 × 32 tile of y per workgroup, each invocation computing
// 2 rows × 2 tokens, over k in steps of 32 staged through workgroup memory.
// Dispatched as (ceil(rows / 32), ceil(tokens / 32), 1).
const TILE: u32 = 32u;
var<workgroup> w_tile: array<array<f32, 33>, 32>; // (rows, k) padded against bank conflicts
var<workgroup> x_tile: array<array<f32, 33>, 32>; // (tokens, k)

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = group.x * TILE;
    let tok0 = group.y * TILE;
    let local = lid.y * 16u + lid.x;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var k0 = 0u; k0 < params.cols; k0 += TILE) {
        // 1024 weights and 1024 activations per tile, 4 of each per invocation.
        for (var i = 0u; i < 4u; i++) {
            let e = local * 4u + i;
            let r = e / TILE;
            let c = e % TILE;
            var wv = 0.0;
            if (row0 + r < params.rows && k0 + c < params.cols) {
                wv = weight(row0 + r, k0 + c);
            }
            w_tile[r][c] = wv;
            var xv = 0.0;
            if (tok0 + r < params.tokens && k0 + c < params.cols) {
                xv = x[(tok0 + r) * params.cols + k0 + c];
            }
            x_tile[r][c] = xv;
        }
        workgroupBarrier();
        for (var c = 0u; c < TILE; c++) {
            let w0 = w_tile[lid.x * 2u][c];
            let w1 = w_tile[lid.x * 2u + 1u][c];
            let x0 = x_tile[lid.y * 2u][c];
            let x1 = x_tile[lid.y * 2u + 1u][c];
            acc[0] += w0 * x0;
            acc[1] += w1 * x0;
            acc[2] += w0 * x1;
            acc[3] += w1 * x1;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.x * 2u + i % 2u;
        let t = tok0 + lid.y * 2u + i / 2u;
        if (r < params.rows && t < params.tokens) {
            y[t * params.out_rows + params.row_offset + r] = acc[i];
        }
    }
}
