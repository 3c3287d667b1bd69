"""Device functions the Triton printer calls where core ``tl`` has no accurate equivalent.

Only core ``tl`` operations, so the Triton interpreter runs them too (``libdevice`` does not work there).
Generated kernel modules import this module as ``_nd``; its source is part of every kernel's cache key
(:func:`kernels_gen.versions.generator_fingerprint`), so editing it regenerates the kernels. Accuracy
against torch is swept over magnitudes 1e-30..1e3 by tests/test_functions.py:

* ``atan_f32`` / ``atan_f64``: Cephes range reduction + polynomial / rational approximation;
* ``tanh_f32`` / ``tanh_f64``: Cephes small-argument polynomial / rational, ``1 − 2/(e^{2|x|} + 1)`` beyond
  (``2σ(2x) − 1`` loses everything below |x| ≈ 1e-8);
* ``erfc``: ``1 − erf(x)`` only where that cancels nothing (x < 0.5), else a Chebyshev fit times
  ``exp(−x²)`` (fractional error < 1.2e-7), which stays accurate where ``1 − erf`` is 0 (x ≥ 4.5);
* ``sq``: ``x·x``, the step of exact integer powers by repeated squaring;
* ``round_bf16``: float32 to bfloat16, rounded to nearest even with integer operations (as torch rounds; the
  interpreter's own conversion truncates).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def sq(x):
    return x * x


@triton.jit
def round_bf16(x):
    bits = x.to(tl.uint32, bitcast=True)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def atan_f32(x):
    ax = tl.abs(x)
    big = ax > 2.414213562373095
    mid = ax > 0.4142135623730950
    r = tl.where(big, -1.0 / tl.maximum(ax, 1e-30), tl.where(mid, (ax - 1.0) / (ax + 1.0), ax))
    base = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
    z = r * r
    poly = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * r + r
    return tl.where(x < 0, -(base + poly), base + poly)


@triton.jit
def atan_f64(x):
    # constants in where-branches go through tl.full so they stay float64
    ax = tl.abs(x)
    big = ax > 2.41421356237309504880
    mid = ax > 0.66
    zero = tl.full((), 0.0, tl.float64)
    r = tl.where(big, -1.0 / tl.maximum(ax, 1e-300), tl.where(mid, (ax - 1.0) / (ax + 1.0), ax))
    base = tl.where(big, tl.full((), 1.57079632679489661923, tl.float64),
                    tl.where(mid, tl.full((), 0.78539816339744830962, tl.float64), zero))
    extra = tl.where(big, tl.full((), 6.123233995736765886130e-17, tl.float64),
                     tl.where(mid, tl.full((), 3.061616997868382943065e-17, tl.float64), zero))
    z = r * r
    p = (((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z - 7.500855792314704667340e1) * z
         - 1.228866684490136173410e2) * z - 6.485021904942025371773e1
    q = ((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z + 4.328810604912902668951e2) * z
         + 4.853903996359136964868e2) * z + 1.945506571482613964425e2
    y = base + (r * (z * p / q) + r) + extra
    return tl.where(x < 0, -y, y)


@triton.jit
def tanh_f32(x):
    ax = tl.abs(x)
    z = x * x
    small = ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z
             - 3.33332819422e-1) * z * x + x
    large = 1.0 - 2.0 / (tl.exp(2.0 * tl.minimum(ax, 40.0)) + 1.0)
    return tl.where(ax < 0.625, small, tl.where(x < 0, -large, large))


@triton.jit
def tanh_f64(x):
    ax = tl.abs(x)
    z = x * x
    p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
    q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
    small = x + x * (z * p / q)
    large = 1.0 - 2.0 / (tl.exp(2.0 * tl.minimum(ax, 40.0)) + 1.0)
    return tl.where(ax < 0.625, small, tl.where(x < 0, -large, large))


@triton.jit
def erfc(x):
    z = tl.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    tail = t * tl.exp(poly)                      # erfc(|x|)
    return tl.where(z < 0.5, 1.0 - tl.erf(x), tl.where(x < 0, 2.0 - tail, tail))
