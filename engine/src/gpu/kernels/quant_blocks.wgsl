// Weight access for each block format, in the GPU layout the backend uploads (every block
// starts on a 4-byte boundary; f16 values are unpacked with unpack2x16float, so nothing needs
// `shader-f16`). Words are little-endian u32; "[a | b]" is a word of two f16, a in the low half.
// - Q4_1: 5 words per block of 32: [d | m], then 16 bytes of nibbles (weight j in the low
//   nibble of byte j, weight j+16 in its high nibble), exactly as GGUF stores it;
// - Q4_0: 5 words: [d | unused], then the nibbles (weight = nibble - 8);
// - Q5_0: 6 words: [d | unused], qh (bit j: the fifth bit of weight j), then Q4_0's nibbles
//   (weight = 5-bit q - 16);
// - Q5_1: 6 words, exactly as GGUF stores it: [d | m], qh, nibbles (weight = q·d + m);
// - Q8_0: 9 words: [d | unused], then 32 signed bytes;
// - Q4_K: 36 words per block of 256, exactly as GGUF stores it: [d | dmin], 12 bytes of 6-bit
//   scales and mins (3 words), 128 bytes of nibbles: byte 32c + l holds weight l of
//   sub-block 2c (low nibble) and of sub-block 2c + 1 (high nibble); weight = d·sc·q - dmin·m;
// - Q5_K: 44 words, exactly as GGUF stores it: [d | dmin], scales (3 words), qh (8 words: bit
//   j of byte l is the fifth bit of weight l of sub-block j), then Q4_K's nibbles;
// - Q6_K: 53 words: GGUF's 210 bytes and 2 zero bytes: ql (32 words), qh (16 words), 16 signed
//   8-bit scales (4 words), [d | 0]. Weight 32k + l of half h (l < 32, k < 4) has the low
//   (k < 2) or high nibble of ql byte 64h + 32·(k % 2) + l, bits 2k, 2k + 1 of qh byte 32h + l
//   on top, and scale byte 8h + 2k + l / 16; weight = d·sc·(q - 32);
// - F16: 2 weights per word; BF16: 2 weights per word (an f32's top halves); F32: one per word.
// The composing code (kernels/mod.rs) defines `w` (the weights), `params.row_words` (words
// per row) and, for the `*_dot` sections, `x` (the activations); it keeps the sections of one
// type (a section may name several). A `*_dot` section's `unit_dot` sums one unit of weights
// × x (8 weights, 16 for Q6_K): UNITS_PER_BLOCK units per COLS_PER_UNIT_BLOCK columns.
// Dequantization (`weight`) must equal gguf/blocks.rs to the bit: it multiplies in ggml's
// order, and every product it rounds is exact (an f16 times a small integer).

fn byte_of(word: u32, i: u32) -> u32 {
    return (word >> (8u * i)) & 0xFFu;
}

fn signed_byte(word: u32, i: u32) -> f32 {
    return f32(i32(word << (24u - 8u * i)) >> 24u);
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

//#if Q5_0
const BLOCK_WORDS: u32 = 6u;
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 32u) * BLOCK_WORDS;
    let d = unpack2x16float(w[base]).x;
    let j = col % 32u;
    let byte = byte_of(w[base + 2u + (j % 16u) / 4u], j % 4u);
    let q = select(byte & 0xFu, byte >> 4u, j >= 16u) | (((w[base + 1u] >> j) & 1u) << 4u);
    return (f32(q) - 16.0) * d;
}
//#endif

//#if Q5_0_dot
// Σ of 8 weights × x: word `unit % 4` of block `unit / 4`'s nibbles (columns c..c+3 and
// c+16..c+19) with their fifth bits.
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 4u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let d = unpack2x16float(w[base]).x;
    let first = (unit % 4u) * 4u;
    let qh = w[base + 1u] >> first;
    let word = w[base + 2u + unit % 4u];
    let c = x_base + block * 32u + first;
    var dot = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let q0 = ((word >> (8u * i)) & 0xFu) | (((qh >> i) & 1u) << 4u);
        let q1 = ((word >> (8u * i + 4u)) & 0xFu) | (((qh >> (16u + i)) & 1u) << 4u);
        dot += (f32(q0) - 16.0) * x[c + i] + (f32(q1) - 16.0) * x[c + 16u + i];
    }
    return d * dot;
}
const UNITS_PER_BLOCK: u32 = 4u;
const COLS_PER_UNIT_BLOCK: u32 = 32u;
//#endif

//#if Q5_1
const BLOCK_WORDS: u32 = 6u;
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 32u) * BLOCK_WORDS;
    let dm = unpack2x16float(w[base]);
    let j = col % 32u;
    let byte = byte_of(w[base + 2u + (j % 16u) / 4u], j % 4u);
    let q = select(byte & 0xFu, byte >> 4u, j >= 16u) | (((w[base + 1u] >> j) & 1u) << 4u);
    return f32(q) * dm.x + dm.y;
}
//#endif

//#if Q5_1_dot
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 4u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let dm = unpack2x16float(w[base]);
    let first = (unit % 4u) * 4u;
    let qh = w[base + 1u] >> first;
    let word = w[base + 2u + unit % 4u];
    let c = x_base + block * 32u + first;
    var dot = 0.0;
    var sum = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let x0 = x[c + i];
        let x1 = x[c + 16u + i];
        let q0 = ((word >> (8u * i)) & 0xFu) | (((qh >> i) & 1u) << 4u);
        let q1 = ((word >> (8u * i + 4u)) & 0xFu) | (((qh >> (16u + i)) & 1u) << 4u);
        dot += f32(q0) * x0 + f32(q1) * x1;
        sum += x0 + x1;
    }
    return dm.x * dot + dm.y * sum;
}
const UNITS_PER_BLOCK: u32 = 4u;
const COLS_PER_UNIT_BLOCK: u32 = 32u;
//#endif

//#if Q4_K Q5_K
// Sub-block j's 6-bit scale and min (ggml `get_scale_min_k4`) from the 12 bytes in words 1..3
// of the block at `base`: sub-blocks 0..3 in the low 6 bits of bytes j and j + 4, sub-blocks
// 4..7 in the nibbles of byte j + 4 with their top 2 bits in bytes j - 4 and j.
fn k_byte(base: u32, i: u32) -> u32 {
    return byte_of(w[base + 1u + i / 4u], i % 4u);
}
fn k_scale_min(base: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(k_byte(base, j) & 63u), f32(k_byte(base, j + 4u) & 63u));
    }
    let packed = k_byte(base, j + 4u);
    return vec2<f32>(
        f32((packed & 0xFu) | ((k_byte(base, j - 4u) >> 6u) << 4u)),
        f32((packed >> 4u) | ((k_byte(base, j) >> 6u) << 4u)),
    );
}
//#endif

//#if Q4_K
const BLOCK_WORDS: u32 = 36u;
const QS_WORD: u32 = 4u;
// No fifth bits: the shared code below ORs in nothing.
fn k_fifth_bit(base: u32, sub: u32, l: u32) -> u32 {
    return 0u;
}
fn k_fifth_bits(base: u32, word: u32) -> u32 {
    return 0u;
}
//#endif

//#if Q5_K
const BLOCK_WORDS: u32 = 44u;
const QS_WORD: u32 = 12u;
// Bit `sub` of qh byte l, as 16.
fn k_fifth_bit(base: u32, sub: u32, l: u32) -> u32 {
    return ((byte_of(w[base + 4u + l / 4u], l % 4u) >> sub) & 1u) << 4u;
}
// The qh word for nibble word `word` of the block (the same four weights l of each chunk).
fn k_fifth_bits(base: u32, word: u32) -> u32 {
    return w[base + 4u + word % 8u];
}
//#endif

//#if Q4_K Q5_K
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 256u) * BLOCK_WORDS;
    let dm = unpack2x16float(w[base]);
    let j = col % 256u;
    let sub = j / 32u;
    let l = j % 32u;
    let sm = k_scale_min(base, sub);
    // Chunk sub / 2 of 32 bytes: low nibbles for even sub-blocks, high ones for odd.
    let byte = byte_of(w[base + QS_WORD + (sub / 2u) * 8u + l / 4u], l % 4u);
    let q = ((byte >> (4u * (sub % 2u))) & 0xFu) | k_fifth_bit(base, sub, l);
    return (dm.x * sm.x) * f32(q) - dm.y * sm.y;
}
//#endif

//#if Q4_K_dot Q5_K_dot
// Σ of 8 weights × x: nibble word k = unit % 32 of the block holds columns l..l+3 (l = 4·(k % 8))
// of sub-block 2·(k / 8) in its low nibbles and of the next sub-block in its high ones.
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 32u;
    let k = unit % 32u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let dm = unpack2x16float(w[base]);
    let sub = 2u * (k / 8u);
    let lo = k_scale_min(base, sub);
    let hi = k_scale_min(base, sub + 1u);
    let word = w[base + QS_WORD + k];
    let qh = k_fifth_bits(base, k);
    let c = x_base + block * 256u + sub * 32u + (k % 8u) * 4u;
    var dot_lo = 0.0;
    var dot_hi = 0.0;
    var sum_lo = 0.0;
    var sum_hi = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let x0 = x[c + i];
        let x1 = x[c + 32u + i];
        let h = qh >> (8u * i + sub);
        dot_lo += f32(((word >> (8u * i)) & 0xFu) | ((h & 1u) << 4u)) * x0;
        dot_hi += f32(((word >> (8u * i + 4u)) & 0xFu) | ((h & 2u) << 3u)) * x1;
        sum_lo += x0;
        sum_hi += x1;
    }
    return dm.x * (lo.x * dot_lo + hi.x * dot_hi) - dm.y * (lo.y * sum_lo + hi.y * sum_hi);
}
const UNITS_PER_BLOCK: u32 = 32u;
const COLS_PER_UNIT_BLOCK: u32 = 256u;
//#endif

//#if Q6_K
const BLOCK_WORDS: u32 = 53u;
fn weight(row: u32, col: u32) -> f32 {
    let base = row * params.row_words + (col / 256u) * BLOCK_WORDS;
    let d = unpack2x16float(w[base + 52u]).x;
    let j = col % 256u;
    let h = j / 128u;
    let k = (j % 128u) / 32u;
    let l = j % 32u;
    let ql = byte_of(w[base + 16u * h + 8u * (k % 2u) + l / 4u], l % 4u);
    let qh = byte_of(w[base + 32u + 8u * h + l / 4u], l % 4u);
    let q = ((ql >> (4u * (k / 2u))) & 0xFu) | (((qh >> (2u * k)) & 3u) << 4u);
    let s = 8u * h + 2u * k + l / 16u;
    return (d * signed_byte(w[base + 48u + s / 4u], s % 4u)) * f32(i32(q) - 32);
}
//#endif

//#if Q6_K_dot
// Σ of 16 weights × x: columns l..l+3 (l = 4·(unit % 8)) of each quarter k of half
// (unit % 16) / 8 of block unit / 16, from one ql word of each of its two 32-byte runs and
// one qh word.
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    let block = unit / 16u;
    let h = (unit % 16u) / 8u;
    let g = unit % 8u;
    let base = row * params.row_words + block * BLOCK_WORDS;
    let d = unpack2x16float(w[base + 52u]).x;
    let ql_first = w[base + 16u * h + g];
    let ql_second = w[base + 16u * h + 8u + g];
    let qh = w[base + 32u + 8u * h + g];
    let c = x_base + block * 256u + 128u * h + 4u * g;
    var dot = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let s = 8u * h + 2u * k + g / 4u;
        let word = select(ql_first, ql_second, k % 2u == 1u) >> (4u * (k / 2u));
        var part = 0.0;
        for (var i = 0u; i < 4u; i++) {
            let q = ((word >> (8u * i)) & 0xFu) | (((qh >> (8u * i + 2u * k)) & 3u) << 4u);
            part += f32(i32(q) - 32) * x[c + 32u * k + i];
        }
        dot += signed_byte(w[base + 48u + s / 4u], s % 4u) * part;
    }
    return d * dot;
}
const UNITS_PER_BLOCK: u32 = 16u;
const COLS_PER_UNIT_BLOCK: u32 = 256u;
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

//#if BF16
fn weight(row: u32, col: u32) -> f32 {
    let word = w[row * params.row_words + col / 2u];
    return bitcast<f32>(select(word << 16u, word & 0xFFFF0000u, col % 2u == 1u));
}
//#endif

//#if BF16_dot
// 8 weights: 4 words of bf16 pairs.
fn unit_dot(row: u32, unit: u32, x_base: u32) -> f32 {
    var dot = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let word = w[row * params.row_words + unit * 4u + k];
        let c = x_base + unit * 8u + 2u * k;
        dot += bitcast<f32>(word << 16u) * x[c] + bitcast<f32>(word & 0xFFFF0000u) * x[c + 1u];
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
