"""A second implementation of deepinit's RNG mapping in numpy, in exact integer
arithmetic: Philox from the README's "The RNG mapping (exact)" section, and the
fixed-point program of the normal and truncated values step by step after
src/rng/fixed.rs, whose coefficient tables it reads. It proves that the shipped
bits are reproducible outside Rust from the documented program; the accuracy of
that program against the exact functions is tested in src/rng/fixed.rs.
Used by tests/cli.rs and tests/model.rs:

    python3 tests/numpy_mapping.py FILE.npy DIST STD SEED TENSOR_ID

loads FILE.npy (written by `deepinit init`), recomputes every element and
exits 0 if every one agrees bit for bit.
"""
import math
import os
import re
import sys

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Vectorised Philox4x32-10 on uint64 arrays holding 32-bit words."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + W0) & 0xFFFFFFFF
            k1 = (k1 + W1) & 0xFFFFFFFF
        p0 = M0 * c0
        p1 = M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return c0, c1, c2, c3


def kat():
    z = np.zeros(1, dtype=np.uint64)
    out = philox4x32_10(z, z, z, z, 0, 0)
    assert [int(w[0]) for w in out] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


U32 = 0xFFFFFFFF


def tables():
    """The fixed-point polynomials (frac bits, coefficients) from src/rng/fixed.rs."""
    src = open(os.path.join(os.path.dirname(__file__), "..", "src", "rng", "fixed.rs")).read()
    polys = {}
    for name, frac, body in re.findall(
            r'pub const (\w+): Poly<\d+> = Poly \{\s*name: "\w+",\s*frac: (\d+),\s*c: \[([^\]]*)\]', src):
        polys[name] = (int(frac), [int(c.replace("_", "")) for c in body.split(",") if c.strip()])
    assert set(polys) == {"LN", "SIN", "COS", "RSQRT", "TRUNC"}, polys.keys()
    return polys


POLYS = tables()
SQRT_HALF_Q32 = 3037000500          # ceil(sqrt(1/2) 2^32)
LN2_Q59 = 399572145162582989        # round(ln 2 2^59)
ERF_SQRT2_Q32 = 4099545151          # round(erf(sqrt 2) 2^32)
assert SQRT_HALF_Q32 == math.ceil(math.sqrt(0.5) * 2 ** 32)
assert ERF_SQRT2_Q32 == round(math.erf(math.sqrt(2.0)) * 2 ** 32)


def i64(x):
    return np.asarray(x, dtype=np.int64)


def wrap_i32(x):
    return ((x + 2 ** 31) & U32) - 2 ** 31


def mulhi(a, b):
    """floor(a b / 2^32) of unsigned 32-bit values (int64 arrays)."""
    return i64((a.astype(np.uint64) * b.astype(np.uint64)) >> np.uint64(32))


def mulhi_s(a, b):
    """floor(a b / 2^32) of signed 32-bit values: exact in int64."""
    return (a * b) >> 32


def horner(name, v):
    frac, c = POLYS[name]
    p = i64(np.full(v.shape, c[0]))
    for ck in c[1:]:
        p = wrap_i32(ck + mulhi_s(p, v))
    return p


def bit_length(x):
    """Bits of non-negative integers below 2^63 (0 for 0)."""
    x = x.copy()
    n = np.zeros(x.shape, dtype=np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = x >= (1 << s)
        n += np.where(big, s, 0)
        x = np.where(big, x >> s, x)
    return n + (x > 0)


def from_fixed(v, frac):
    """v / 2^frac as (m, e): m / 2^31 2^e with m's top bit set (m = 0 for zero)."""
    lz = 32 - bit_length(v)
    return (v << (lz & 31)) & U32, 31 - lz - frac


def times(a, b):
    p = mulhi(a[0], b[0])
    top = p >> 31
    return (p << (1 - top)) & U32, a[1] + b[1] + top


def to_f32_bits(x, negative):
    m, e = x
    r = (m >> 8) + ((m >> 7) & 1)
    carry = r >> 24
    r = r >> carry
    bits = ((e + carry + 127) << 23) | (r & 0x7FFFFF) | (negative.astype(np.int64) << 31)
    return np.where(m == 0, 0, bits).astype(np.uint32)


def neg_ln_q59(mn, e0):
    """-ln(mn 2^-32 2^-e0) in Q5.59."""
    small = mn < SQRT_HALF_Q32
    j = e0 + small
    y = np.where(small, ((mn - 2 ** 31) << 1) & U32, (2 ** 32 - mn) & U32)
    p = horner("LN", np.where(small, y, -y))
    t = (y * p) >> 3  # y < 2^31, p < 2^31: exact in int64
    base = j.astype(object) * LN2_Q59  # up to 2^64: Python integers
    h = np.where(small, base - t.astype(object), base + t.astype(object))
    return h


def radius(w):
    m = (w >> 8) + 1
    lz = 32 - bit_length(m)
    h = neg_ln_q59((m << lz) & U32, lz - 8)
    hl = np.array([int(v).bit_length() for v in h], dtype=np.int64)
    s = (64 - hl) & 62
    x = np.array([(int(v) << int(k)) >> 32 for v, k in zip(h, s)], dtype=np.int64)
    x = np.maximum(x, 1 << 30)
    rs_frac = POLYS["RSQRT"][0]
    g = (horner("RSQRT", x >> 1) << (30 - rs_frac)) & U32
    for _ in range(2):
        gg = mulhi(g, g)
        d = wrap_i32((1 << 28) - mulhi(x, gg))
        g = (g + mulhi_s(wrap_i32(g), wrap_i32(d << 3))) & U32
    root = mulhi(x, g)
    m_, e = from_fixed(root, 30)
    e = e + 3 - s // 2
    zero = np.array([int(v) == 0 for v in h])
    return np.where(zero, 0, m_), e


def sincos(w):
    a = ((w >> 8) << 1) - 0xFFFFFF
    u = np.abs(a)
    q = 1 << 23
    flip = u > q
    v = np.where(flip, 2 * q - u, u)
    swap = v > q // 2
    ww = np.where(swap, q - v, v)
    t = (ww * ww) >> 13
    sin_g = times(from_fixed(ww, 22), from_fixed(horner("SIN", t) & U32, POLYS["SIN"][0]))
    cos_g = from_fixed(horner("COS", t) & U32, POLYS["COS"][0])
    s = (np.where(swap, cos_g[0], sin_g[0]), np.where(swap, cos_g[1], sin_g[1]))
    c = (np.where(swap, sin_g[0], cos_g[0]), np.where(swap, sin_g[1], cos_g[1]))
    return a < 0, s, flip, c


def truncated_bits(w):
    a = ((w >> 8) << 1) - 0xFFFFFF
    abs_a = np.abs(a)
    y = mulhi(i64(np.full(a.shape, ERF_SQRT2_Q32)), abs_a << 8)
    q = mulhi(y, y)
    v = (2 ** 32 - q) & U32
    lz = 32 - bit_length(v)
    h = neg_ln_q59((v << (lz & 31)) & U32, lz)
    h = np.where(q == 0, 0, h)
    u = np.array([int(x) >> 30 for x in h], dtype=np.int64)
    g = horner("TRUNC", u) & U32
    return to_f32_bits(times(from_fixed(abs_a, 24), from_fixed(g, POLYS["TRUNC"][0])), a < 0)


def expected(dist, std, seed, tensor, n, start=0):
    """Elements start .. start + n of the tensor, as float32."""
    e = np.arange(start, start + n, dtype=np.uint64)
    block, lane = e >> np.uint64(2), (e & np.uint64(3)).astype(np.int64)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    x = np.stack(philox4x32_10(block & MASK, block >> np.uint64(32),
                               np.full(n, tensor, dtype=np.uint64),
                               np.zeros(n, dtype=np.uint64), k0, k1))
    rows = np.arange(n)
    k = lambda w: (w >> np.uint64(8)).astype(np.float64)
    signed_unit = lambda w: (k(w) - 8388607.5) * 2.0 ** -23
    if dist == "normal":
        pair = lane & ~1
        wa, wb = i64(x[pair, rows]), i64(x[pair + 1, rows])
        r = radius(wa)
        sn, s, cn, c = sincos(wb)
        cos_bits = to_f32_bits(times(r, c), cn)
        sin_bits = to_f32_bits(times(r, s), sn)
        unit = np.where(lane % 2 == 0, cos_bits, sin_bits).view(np.float32)
        return unit * np.float32(std)
    if dist == "uniform":
        scale = np.float32(std * math.sqrt(3.0))
        return signed_unit(x[lane, rows]).astype(np.float32) * scale
    if dist == "truncated":
        scale = np.float32(std / 0.87962566103423978)
        unit = truncated_bits(i64(x[lane, rows])).view(np.float32)
        return unit * scale
    raise SystemExit(f"unknown dist {dist}")


def main():
    path, dist, std, seed, tensor = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    kat()
    got = np.load(path)
    assert got.dtype == np.float32, got.dtype
    flat = got.reshape(-1)
    want = expected(dist, std, seed, tensor, flat.size)
    bad = int(np.count_nonzero(flat.view(np.uint32) != want.view(np.uint32)))
    print(f"{path}: shape {got.shape}, {flat.size} elements, {bad} disagree")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
