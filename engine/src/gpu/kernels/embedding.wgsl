// Token embedding: gathers rows `ids` of a weight table (any block format, see
// quant_blocks.wgsl) into f32 activations. A large table comes in parts of whole rows (one
// dispatch each); each dispatch writes the ids that fall in its part.

struct Meta {
    tokens: u32,    // number of ids
    cols: u32,      // embedding width
    row_words: u32, // u32 words per table row
    first_row: u32, // the part bound holds rows first_row .. first_row + part_rows
    part_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Meta;
@group(0) @binding(1) var<storage, read> ids: array<u32>;        // (tokens)
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (part_rows, row_words)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (tokens, cols)

// One invocation per output element; dispatched as (ceil(cols / 256), tokens, 1).
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let t = gid.y;
    if (col >= params.cols || t >= params.tokens) {
        return;
    }
    let id = ids[t];
    if (id < params.first_row || id - params.first_row >= params.part_rows) {
        return;
    }
    out[t * params.cols + col] = weight(id - params.first_row, col);
}
