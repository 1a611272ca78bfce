# Dequantization reference values straight from ggml: raw blocks (random ones, edge cases, and
# blocks ggml itself quantized) and the f32 values that ggml's own
# `ggml_get_type_traits(type)->to_float` turns them into, called through ctypes on the
# libggml-base shared library that llama-cpp-python installs. No re-implementation anywhere.
# usage: PYTHONPATH=target/bench/python python make_dequant_reference.py OUT.json
#   (OUT is engine/tests/fixtures/dequant_reference.json; llama-cpp-python is built by
#   `cargo xtask bench-compare`, into target/bench/python)
import ctypes, glob, json, os, struct, sys
import numpy as np
import llama_cpp

out_f = sys.argv[1]

# --- ggml, through ctypes -------------------------------------------------------------------
lib_dir = os.path.dirname(llama_cpp.__file__)
candidates = sorted(glob.glob(os.path.join(lib_dir, "**", "libggml-base.so*"), recursive=True)) \
    or sorted(glob.glob(os.path.join(lib_dir, "**", "libggml.so*"), recursive=True))
if not candidates:
    sys.exit(f"no libggml-base.so under {lib_dir}")
ggml_path = candidates[0]
ggml = ctypes.CDLL(ggml_path)

class TypeTraits(ctypes.Structure):  # struct ggml_type_traits (ggml/include/ggml.h)
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]

ggml.ggml_get_type_traits.argtypes = [ctypes.c_int]
ggml.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p,
                                     ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                     ctypes.POINTER(ctypes.c_float)]
ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
ToFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)

# name: (enum ggml_type, block size, bytes per block) as ggml-common.h lays them out; checked
# against ggml's traits below.
TYPES = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "BF16": (30, 1, 2),
    "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
}

def traits(name):
    t = ggml.ggml_get_type_traits(TYPES[name][0]).contents
    assert t.type_name.decode().upper() == name, (t.type_name, name)
    assert (t.blck_size, t.type_size) == TYPES[name][1:], (name, t.blck_size, t.type_size)
    assert t.to_float or name == "F32", name  # F32 has no to_float: it is already f32
    return t

def dequantize(name, raw):
    t = traits(name)
    assert len(raw) % t.type_size == 0
    n = len(raw) // t.type_size * t.blck_size
    if not t.to_float:
        return np.frombuffer(bytes(raw), dtype="<f4").copy()
    src = ctypes.create_string_buffer(bytes(raw), len(raw))
    dst = (ctypes.c_float * n)()
    ToFloat(t.to_float)(ctypes.cast(src, ctypes.c_void_p), dst, n)
    return np.frombuffer(bytes(dst), dtype=np.float32)

def quantize(name, values):
    t = traits(name)
    x = np.ascontiguousarray(values, dtype=np.float32)
    assert x.size % t.blck_size == 0
    dst = ctypes.create_string_buffer(x.size // t.blck_size * t.type_size)
    size = ggml.ggml_quantize_chunk(TYPES[name][0], x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                    ctypes.cast(dst, ctypes.c_void_p), 0, 1, x.size, None)
    assert size == len(dst.raw), (name, size)
    return dst.raw

# --- blocks ---------------------------------------------------------------------------------
rng = np.random.default_rng(20250601)
def f16(x): return np.float16(x).tobytes()
def f16_bits(b): return struct.pack("<H", b)
def rnd(n): return rng.integers(0, 256, n, dtype=np.uint8).tobytes()
def small_scale(): return f16(rng.normal(0, 0.02))
def rep(byte, n): return bytes([byte]) * n
# 16 bytes whose low nibbles count up 0..15 and high nibbles count down 15..0: shows which
# nibble lands at which position.
RAMP16 = bytes(((j & 15) | ((15 - j) << 4)) for j in range(16))
F16_MAX, F16_MIN_SUBNORMAL, F16_NEG_ZERO = f16_bits(0x7BFF), f16_bits(0x0001), f16_bits(0x8000)

cases = {name: [] for name in TYPES}
def add(name, case, raw):
    cases[name].append((case, raw))

# Q4_0: d (f16), qs[16]; value = (nibble - 8) * d, low nibbles first.
add("Q4_0", "random", small_scale() + rnd(16))
add("Q4_0", "all nibbles 15, d = 0.5", f16(0.5) + rep(0xFF, 16))
add("Q4_0", "all nibbles 0, negative d = -0.25", f16(-0.25) + rep(0x00, 16))
add("Q4_0", "nibble ramp, d = 1", f16(1.0) + RAMP16)
add("Q4_0", "d = 0", f16(0.0) + rnd(16))
add("Q4_0", "d = -0.0", F16_NEG_ZERO + rnd(16))
add("Q4_0", "d = f16 max (65504)", F16_MAX + rnd(16))
add("Q4_0", "d = smallest f16 subnormal", F16_MIN_SUBNORMAL + rnd(16))

# Q4_1: d, m (f16), qs[16]; value = nibble * d + m.
add("Q4_1", "random", small_scale() + f16(-abs(rng.normal(0, 0.1))) + rnd(16))
add("Q4_1", "all nibbles 15, d = 0.5, m = 1", f16(0.5) + f16(1.0) + rep(0xFF, 16))
add("Q4_1", "negative d and m", f16(-0.125) + f16(-2.0) + rnd(16))
add("Q4_1", "d = 0, m = 3", f16(0.0) + f16(3.0) + rnd(16))
add("Q4_1", "nibble ramp, d = 1, m = -8", f16(1.0) + f16(-8.0) + RAMP16)
add("Q4_1", "d = f16 max, m = -f16 max", F16_MAX + f16_bits(0xFBFF) + rnd(16))

# Q5_0: d, qh (u32: the fifth bits), qs[16]; value = (nibble | bit << 4) - 16) * d.
add("Q5_0", "random", small_scale() + rnd(4) + rnd(16))
add("Q5_0", "all 5-bit values 31, d = 0.5", f16(0.5) + rep(0xFF, 4) + rep(0xFF, 16))
add("Q5_0", "all 5-bit values 0, negative d = -0.25", f16(-0.25) + rep(0x00, 4) + rep(0x00, 16))
add("Q5_0", "nibble ramp, qh = 0xAAAAAAAA, d = 1", f16(1.0) + struct.pack("<I", 0xAAAAAAAA) + RAMP16)
add("Q5_0", "nibble ramp, qh = 0x0000FFFF, d = 1", f16(1.0) + struct.pack("<I", 0x0000FFFF) + RAMP16)
add("Q5_0", "d = 0", f16(0.0) + rnd(4) + rnd(16))

# Q5_1: d, m, qh, qs[16]; value = (nibble | bit << 4) * d + m.
add("Q5_1", "random", small_scale() + f16(-abs(rng.normal(0, 0.1))) + rnd(4) + rnd(16))
add("Q5_1", "all 5-bit values 31, d = 0.5, m = 1", f16(0.5) + f16(1.0) + rep(0xFF, 4) + rep(0xFF, 16))
add("Q5_1", "negative d and m", f16(-0.125) + f16(-2.0) + rnd(4) + rnd(16))
add("Q5_1", "nibble ramp, qh = 0x55555555, d = 1, m = -16", f16(1.0) + f16(-16.0) + struct.pack("<I", 0x55555555) + RAMP16)
add("Q5_1", "d = 0, m = 3", f16(0.0) + f16(3.0) + rnd(4) + rnd(16))

# Q8_0: d, qs[32] (i8); value = q * d.
add("Q8_0", "random", small_scale() + rnd(32))
add("Q8_0", "all 127, d = 0.5", f16(0.5) + rep(0x7F, 32))
add("Q8_0", "all -128, negative d = -0.25", f16(-0.25) + rep(0x80, 32))
add("Q8_0", "ramp -128..127 by 8, d = 1", f16(1.0) + bytes((q & 0xFF) for q in range(-128, 128, 8)))
add("Q8_0", "d = 0", f16(0.0) + rnd(32))
add("Q8_0", "d = f16 max", F16_MAX + rnd(32))

# K-quants: d, dmin (f16), scales[12] holding 8 six-bit scales and 8 six-bit mins (sub-blocks of
# 32): for j < 4, sc = s[j] & 63, m = s[j + 4] & 63; for j >= 4, sc = (s[j + 4] & 15) |
# ((s[j - 4] >> 6) << 4), m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4); value = d * sc * q - dmin * m.
K_SCALES = {
    "all scales and mins 63 (every bit set)": rep(0xFF, 12),
    "scales and mins 0": rep(0x00, 12),
    "only the high 2 bits of bytes 0-7 (sub-blocks 4-7: 48, 0-3: 0)": rep(0xC0, 8) + rep(0x00, 4),
    "low 6 bits of bytes 0-7 and all of bytes 8-11 (0-3: 63, 4-7: 15)": rep(0x3F, 8) + rep(0xFF, 4),
    "bytes 8-11 split nibbles (0x0F, 0xF0, 0x5A, 0xA5)": rep(0x00, 8) + bytes([0x0F, 0xF0, 0x5A, 0xA5]),
    "distinct 6-bit scales and mins": None,  # filled below
}
def pack_k_scales(sc, m):
    s = [0] * 12
    for j in range(4):
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6)
        s[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4)
    return bytes(s)
K_SCALES["distinct 6-bit scales and mins"] = pack_k_scales([1, 2, 4, 8, 16, 32, 63, 47], [63, 5, 17, 0, 33, 48, 9, 62])
QS_RAMP128 = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(128))

add("Q4_K", "random", small_scale() + small_scale() + rnd(12) + rnd(128))
for what, sc in K_SCALES.items():
    add("Q4_K", f"{what}; nibble ramp; d = 0.5, dmin = 0.25", f16(0.5) + f16(0.25) + sc + QS_RAMP128)
add("Q4_K", "all nibbles 15, all scales/mins 63, negative d and dmin", f16(-0.5) + f16(-0.25) + rep(0xFF, 12) + rep(0xFF, 128))
add("Q4_K", "d = 0, dmin = 0.5, random", f16(0.0) + f16(0.5) + rnd(12) + rnd(128))

add("Q5_K", "random", small_scale() + small_scale() + rnd(12) + rnd(32) + rnd(128))
for what, sc in K_SCALES.items():
    add("Q5_K", f"{what}; nibble ramp, qh = 0xAA..; d = 0.5, dmin = 0.25", f16(0.5) + f16(0.25) + sc + rep(0xAA, 32) + QS_RAMP128)
add("Q5_K", "all 5-bit values 31, all scales/mins 63, negative d and dmin", f16(-0.5) + f16(-0.25) + rep(0xFF, 12) + rep(0xFF, 32) + rep(0xFF, 128))
add("Q5_K", "qh bytes 0x01 0x02 .. 0x80 (each bit once per 8 bytes), qs 0", f16(1.0) + f16(0.0) + K_SCALES["distinct 6-bit scales and mins"] + bytes(1 << (j % 8) for j in range(32)) + rep(0x00, 128))

# Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8, one per 16 values), d (f16);
# value = d * scale * (q - 32).
add("Q6_K", "random", rnd(128) + rnd(64) + rnd(16) + small_scale())
add("Q6_K", "all q 63, scales 127, d = 0.5", rep(0xFF, 128) + rep(0xFF, 64) + rep(0x7F, 16) + f16(0.5))
add("Q6_K", "all q 0, scales -128, d = 0.5", rep(0x00, 128) + rep(0x00, 64) + rep(0x80, 16) + f16(0.5))
add("Q6_K", "ql nibble ramp, qh 0xE4 (2-bit fields 0,1,2,3), scales -8..7, d = 1", QS_RAMP128 + rep(0xE4, 64) + bytes((s & 0xFF) for s in range(-8, 8)) + f16(1.0))
add("Q6_K", "random q, negative d", rnd(128) + rnd(64) + rnd(16) + f16(-0.0625))
add("Q6_K", "random q, d = 0", rnd(128) + rnd(64) + rnd(16) + f16(0.0))

# F16 / BF16 / F32: element by element.
F16_SPECIAL = [0x0000, 0x8000, 0x3C00, 0xC000, 0x3555, 0x7BFF, 0xFBFF, 0x0001, 0x03FF, 0x0400,
               0x8001, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7DFF, 0x3BFF, 0x3C01, 0x1400]
add("F16", "special: ±0, 1, -2, 1/3, ±max, subnormals, min normal, ±inf, NaNs (quiet, signalling)", b"".join(f16_bits(b) for b in F16_SPECIAL))
add("F16", "random finite", np.float16(rng.normal(0, 1, 32)).tobytes())
add("F16", "random bits", rnd(64))
BF16_SPECIAL = [0x0000, 0x8000, 0x3F80, 0xC000, 0x3EAB, 0x7F7F, 0xFF7F, 0x0001, 0x007F, 0x0080,
                0x8001, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0x7FBF, 0x3F7F, 0x3F81, 0x4049]
add("BF16", "special: ±0, max, subnormals, min normal, ±inf, NaNs (quiet, signalling)", b"".join(f16_bits(b) for b in BF16_SPECIAL))
add("BF16", "random bits", rnd(64))
add("F32", "identity: ±0, 1, max, min subnormal, inf, NaN, random",
    struct.pack("<8I", 0x00000000, 0x80000000, 0x3F800000, 0x7F7FFFFF, 0x00000001, 0x7F800000, 0x7FC00001, 0xBEEF1234))

# Blocks ggml quantized itself (two blocks: the stride between blocks too), from normal data with
# a few outliers, as real weights look.
for name in TYPES:
    if name == "F32":
        continue
    nb = TYPES[name][1] * (2 if TYPES[name][1] > 1 else 32)
    x = rng.normal(0, 0.05, nb).astype(np.float32)
    x[rng.integers(0, nb, 3)] *= 8
    add(name, "two blocks quantized by ggml_quantize_chunk from normal data", quantize(name, x))

# --- output ---------------------------------------------------------------------------------
def f32_text(v):  # the shortest decimal that reads back as this f32 (numpy's str of a float32)
    return float(str(v)) if np.isfinite(v) else None

out = {
    "generator": "tools/llamacpp/make_dequant_reference.py",
    "ggml": f"llama-cpp-python {llama_cpp.__version__}: {os.path.basename(ggml_path)}, "
            "ggml_get_type_traits(type)->to_float",
    "format": "per type: ggml_type (enum value), block_size (values per block), type_size (bytes per "
              "block), blocks: [{case, hex (raw little-endian bytes, a whole number of blocks), bits (the "
              "f32 results as u32 bit patterns, hex), values (the same as numbers, null where not finite)}]. "
              "bits is exact; values is for reading (shortest decimal that gives back the f32).",
    "types": {},
}
for name, (gtype, bsize, tsize) in TYPES.items():
    t = traits(name)
    blocks = []
    for case, raw in cases[name]:
        y = dequantize(name, raw)
        blocks.append({
            "case": case,
            "hex": raw.hex(),
            "bits": [f"{b:08x}" for b in y.view(np.uint32)],
            "values": [f32_text(v) for v in y],
        })
    out["types"][name] = {"ggml_type": gtype, "block_size": int(t.blck_size),
                          "type_size": int(t.type_size), "blocks": blocks}

# One JSON line per block keeps the file small and its diffs readable.
with open(out_f, "w") as f:
    f.write("{\n")
    for key in ("generator", "ggml", "format"):
        f.write(f" {json.dumps(key)}: {json.dumps(out[key], ensure_ascii=False)},\n")
    f.write(' "types": {\n')
    names = list(out["types"])
    for i, name in enumerate(names):
        t = out["types"][name]
        f.write(f'  {json.dumps(name)}: {{"ggml_type": {t["ggml_type"]}, "block_size": {t["block_size"]}, '
                f'"type_size": {t["type_size"]}, "blocks": [\n')
        for j, b in enumerate(t["blocks"]):
            f.write("   " + json.dumps(b, ensure_ascii=False) + ("," if j + 1 < len(t["blocks"]) else "") + "\n")
        f.write("  ]}" + ("," if i + 1 < len(names) else "") + "\n")
    f.write(" }\n}\n")
json.load(open(out_f))  # still valid JSON
print("wrote", out_f, {n: len(c) for n, c in cases.items()}, os.path.getsize(out_f), "bytes")
