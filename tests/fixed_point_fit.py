"""Fits the fixed-point polynomials of src/rng/fixed.rs. Run once (numpy only):

    python3 tests/fixed_point_fit.py

prints each table's format and coefficients (the values in src/rng/fixed.rs). Not part of the test
suite: the Rust tests check the tables' accuracy over every input instead.

Each polynomial is a Chebyshev least-squares fit on 400 Chebyshev nodes of its
interval (near-minimax), converted to monomial coefficients in the argument the
integer program passes (a signed Q0.32 value in [-1/2, 1/2)), and rounded to the
polynomial's fixed-point format Q(32-F).F, F chosen so every Horner partial sum
on the interval fits an i32 with headroom.
"""
import math
from decimal import Decimal, getcontext

import numpy as np
from numpy.polynomial import chebyshev as C, polynomial as P

getcontext().prec = 60
ERF_SQRT2 = math.erf(math.sqrt(2.0))
WMAX = -math.log1p(-ERF_SQRT2 ** 2)


def erfinv(y):
    x = np.sqrt(-np.log1p(-y * y)) * 0.9
    erf = np.vectorize(math.erf)
    for _ in range(50):
        x = x - (erf(x) - y) / (2 / math.sqrt(math.pi) * np.exp(-x * x))
    return x


def ln_ratio(y):  # ln(1 + y) / y
    safe = np.where(y == 0, 1.0, y)
    return np.where(y == 0, 1.0, np.log1p(y) / safe)


def sin_ratio(v):  # sin(pi x / 4) / x with x = sqrt(2 v)
    x = np.sqrt(2 * v)
    safe = np.where(x == 0, 1.0, x)
    return np.where(x == 0, math.pi / 4, np.sin(math.pi * x / 4) / safe)


def cos_q(v):  # cos(pi x / 4) with x = sqrt(2 v)
    return np.cos(math.pi * np.sqrt(2 * v) / 4)


def rsqrt(v):  # 1 / sqrt(x) with x = 2 v
    return 1 / np.sqrt(2 * v)


def trunc_ratio(u):  # sqrt(2) erfinv(y) / s, y = ERF_SQRT2 s, w = -ln(1 - y^2) = 8 u
    y = np.sqrt(-np.expm1(-8 * u))
    out = np.empty_like(u)
    small = y < 1e-5
    yy = y[~small]
    out[~small] = math.sqrt(2) * ERF_SQRT2 * erfinv(yy) / yy
    out[small] = math.sqrt(2) * ERF_SQRT2 * math.sqrt(math.pi) / 2 * (1 + math.pi / 12 * y[small] ** 2)
    return out


# name, function, interval, degree
POLYS = [
    ("LN", ln_ratio, math.sqrt(0.5) - 1, math.sqrt(2) - 1, 11),
    ("SIN", sin_ratio, 0.0, 0.5, 4),
    ("COS", cos_q, 0.0, 0.5, 4),
    ("RSQRT", rsqrt, 0.125, 0.5, 4),
    ("TRUNC", trunc_ratio, 0.0, WMAX / 8, 8),
]

for name, f, a, b, deg in POLYS:
    nodes = np.cos(np.pi * (np.arange(400) + 0.5) / 400) * (b - a) / 2 + (a + b) / 2
    ch = C.Chebyshev.fit(nodes, f(nodes), deg, domain=[a, b])
    mono = ch.convert(kind=P.Polynomial, domain=[-1, 1], window=[-1, 1]).coef
    grid = np.linspace(a, b, 100001)
    # Horner partial sums, highest degree first.
    part = np.zeros_like(grid)
    worst = 0.0
    for c in mono[::-1]:
        part = c + part * grid
        worst = max(worst, np.max(np.abs(part)))
    frac = 31 - math.ceil(math.log2(worst * 1.05))
    coeffs = [int(round(c * 2.0 ** frac)) for c in mono[::-1]]
    err = np.max(np.abs(P.polyval(grid, mono) / f(grid) - 1))
    print(f"// {name}: degree {deg} on [{a:.6f}, {b:.6f}], fit error 2^{math.log2(err):.1f} relative")
    print(f"pub const {name}_FRAC: u32 = {frac};")
    print(f"pub const {name}: [i32; {deg + 1}] = [{', '.join(str(c) for c in coeffs)}];")
# ln 2 needs 59 bits: decimal, not float.
LN2_Q59 = int((Decimal(2).ln() * 2 ** 59).to_integral_value())
print(f"// ERF_SQRT2_Q32 = {round(ERF_SQRT2 * 2 ** 32)}, LN2_Q59 = {LN2_Q59}, "
      f"SQRT_HALF_Q32 = {math.ceil(math.sqrt(0.5) * 2 ** 32)}")
