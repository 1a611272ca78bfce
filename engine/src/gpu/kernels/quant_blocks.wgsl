// Weight access for each block format, in the GPU layout the backend uploads (every block
// starts on a 4-byte boundary; f16 values are unpacked with unpack2x16float, so nothing needs
// `shader-f16`):
// - Q4_1: 5 words per block: [d | m] (f16 pair), then 16 bytes of nibbles (weight j in the low
//   nibble of byte j, weight j+16 in its high nibble), exactly as GGUF stores it;
// - Q4_0: 5 words: [d | unused], then the nibbles (weight = nibble - 8);
// - Q8_0: 9 words: [d | unused], then 32 signed bytes;
// - F16: 2 weights per word; F32: one weight per word.
// The composing code (kernels/mod.rs) defines `w` (the weights), `params.row_words` (words
// per row) and, for the `*_dot` sections, `x` (the activations); it keeps the sections of one
// type.

fn byte_of(word: u32, i: u32) -> u32 {
    return (word >> (8u * i)) & 0xFFu;
}

//#if Q4_1
const BLOCK_WORDS: u32 = 5u;
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 32u) * BLOCK_WORDS;
    let dm = unpack2x16float(w[base]);
    let j = col % 32u;
    let byte = byte_of(w[base + 1u + (j % 16u) / 4u], j % 4u);
    let q = select(byte & 0xFu, byte >> 4u, j >= 16u);
    return f32(q) * dm.x + dm.y;
}
//#endif

//#if Q4_1_dot
// Σ of 8 weights × x: the word `unit % 4` of block `unit / 4`, i.e. columns c..c+3 (low
// nibbles) and c+16..c+19 (high nibbles).
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 4u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let dm = unpack2x16float(w[base]);
    let word = w[base + 1u + unit % 4u];
    let c = x_base + block * 32u + (unit % 4u) * 4u;
    var dot = 0.0;
    var sum = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let x0 = x[c + i];
        let x1 = x[c + 16u + i];
        dot += f32((word >> (8u * i)) & 0xFu) * x0 + f32((word >> (8u * i + 4u)) & 0xFu) * x1;
        sum += x0 + x1;
    }
    return dm.x * dot + dm.y * sum;
}
const UNITS_PER_BLOCK: u32 = 4u;
const COLS_PER_UNIT_BLOCK: u32 = 32u;
//#endif

//#if Q4_0
const BLOCK_WORDS: u32 = 5u;
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 32u) * BLOCK_WORDS;
    let d = unpack2x16float(w[base]).x;
    let j = col % 32u;
    let byte = byte_of(w[base + 1u + (j % 16u) / 4u], j % 4u);
    let q = select(byte & 0xFu, byte >> 4u, j >= 16u);
    return (f32(q) - 8.0) * d;
}
//#endif

//#if Q4_0_dot
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 4u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let d = unpack2x16float(w[base]).x;
    let word = w[base + 1u + unit % 4u];
    let c = x_base + block * 32u + (unit % 4u) * 4u;
    var dot = 0.0;
    for (var i = 0u; i < 4u; i++) {
        dot += (f32((word >> (8u * i)) & 0xFu) - 8.0) * x[c + i]
             + (f32((word >> (8u * i + 4u)) & 0xFu) - 8.0) * x[c + 16u + i];
    }
    return d * dot;
}
const UNITS_PER_BLOCK: u32 = 4u;
const COLS_PER_UNIT_BLOCK: u32 = 32u;
//#endif

//#if Q8_0
const BLOCK_WORDS: u32 = 9u;
fn signed_byte(word: u32, i: u32) -> f32 {
    return f32(i32(word << (24u - 8u * i)) >> 24u);
}
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 32u) * BLOCK_WORDS;
    let d = unpack2x16float(w[base]).x;
    let j = col % 32u;
    return signed_byte(w[base + 1u + j / 4u], j % 4u) * d;
}
//#endif

//#if Q8_0_dot
// 8 consecutive weights: words 2·(unit % 4) and 2·(unit % 4) + 1 of block unit / 4.
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 4u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let d = unpack2x16float(w[base]).x;
    let first = 2u * (unit % 4u);
    let c = x_base + block * 32u + first * 4u;
    var dot = 0.0;
    for (var k = 0u; k < 2u; k++) {
        let word = w[base + 1u + first + k];
        for (var i = 0u; i < 4u; i++) {
            dot += signed_byte(word, i) * x[c + 4u * k + i];
        }
    }
    return d * dot;
}
const UNITS_PER_BLOCK: u32 = 4u;
const COLS_PER_UNIT_BLOCK: u32 = 32u;
//#endif

//#if F16
fn weight(row: u32, col: u32) -> f32 {
    let pair = unpack2x16float(w[row * params.row_words + col / 2u]);
    return select(pair.x, pair.y, col % 2u == 1u);
}
//#endif

//#if F16_dot
// 8 weights: 4 words of f16 pairs.
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    var dot = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let pair = unpack2x16float(w[row * params.row_words + unit * 4u + k]);
        let c = x_base + unit * 8u + 2u * k;
        dot += pair.x * x[c] + pair.y * x[c + 1u];
    }
    return dot;
}
const UNITS_PER_BLOCK: u32 = 1u;
const COLS_PER_UNIT_BLOCK: u32 = 8u;
//#endif

//#if F32
fn weight(row: u32, col: u32) -> f32 {
    return bitcast<f32>(w[row * params.row_words + col]);
}
//#endif

//#if F32_dot
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    var dot = 0.0;
    for (var k = 0u; k < 8u; k++) {
        dot += bitcast<f32>(w[row * params.row_words + unit * 8u + k]) * x[x_base + unit * 8u + k];
    }
    return dot;
}
const UNITS_PER_BLOCK: u32 = 1u;
const COLS_PER_UNIT_BLOCK: u32 = 8u;
//#endif
