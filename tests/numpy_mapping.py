"""Independent re-implementation of deepinit's RNG mapping in numpy, written
from the README's "RNG mapping" section alone. Used by tests/cli.rs:

    python3 tests/numpy_mapping.py FILE.npy DIST STD SEED TENSOR_ID

loads FILE.npy (written by `deepinit init --backend cpu`), recomputes every
element and exits 0 if they agree: uniform bit for bit, normal and truncated
within 2 float32 ULP (both sides compute in float64 and round once; libm and
numpy may differ in the last f64 bit, which can flip one f32 rounding).
"""
import math
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


def erfinv(y):
    """Giles' approximation refined by Newton steps on math.erf (float64)."""
    w = -np.log((1.0 - y) * (1.0 + y)) - 2.5
    p = 2.81022636e-08
    for c in [3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
              -0.00125372503, -0.00417768164, 0.246640727, 1.50140941]:
        p = c + p * w
    x = p * y
    erf = np.vectorize(math.erf)
    for _ in range(2):
        x = x - (erf(x) - y) / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
    return x


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
        wa, wb = x[pair, rows], x[pair + 1, rows]
        r = np.sqrt(np.maximum(-2.0 * np.log((k(wa) + 1.0) * 2.0 ** -24), 0.0))
        theta = math.pi * signed_unit(wb)
        z = np.where(lane % 2 == 0, r * np.cos(theta), r * np.sin(theta))
        return (z * float(np.float32(std))).astype(np.float32)
    if dist == "uniform":
        scale = np.float32(std * math.sqrt(3.0))
        return signed_unit(x[lane, rows]).astype(np.float32) * scale
    if dist == "truncated":
        scale = np.float32(std * math.sqrt(2.0) / 0.87962566103423978)
        y = 0.9544997361036416 * signed_unit(x[lane, rows])
        return (erfinv(y) * float(scale)).astype(np.float32)
    raise SystemExit(f"unknown dist {dist}")


def main():
    path, dist, std, seed, tensor = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    kat()
    got = np.load(path)
    assert got.dtype == np.float32, got.dtype
    flat = got.reshape(-1)
    want = expected(dist, std, seed, tensor, flat.size)
    if dist == "uniform":
        bad = int(np.count_nonzero(flat.view(np.uint32) != want.view(np.uint32)))
    else:
        ulp = np.spacing(np.abs(want))
        bad = int(np.count_nonzero(np.abs(flat.astype(np.float64) - want) > 2 * ulp))
    print(f"{path}: shape {got.shape}, {flat.size} elements, {bad} disagree")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
