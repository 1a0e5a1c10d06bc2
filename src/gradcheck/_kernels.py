"""numba kernels: plain loops over arrays the caller allocated.

They never validate input or read settings; ``_jit.compiled`` decides how they are compiled.
Each takes and fills arrays whose shapes the calling engine guarantees.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, types

from ._jit import helper

# Blue's thresholds and power-of-two scale factors for binary64 (Anderson, ACM TOMS 44(1),
# Algorithm 978, with the constants as corrected in Reference-LAPACK PR #559): squares of
# values in [TSML, TBIG] neither overflow nor underflow; others are scaled exactly.
TSML = 2.0**-511
TBIG = 2.0**486
SSML = 2.0**537
SBIG = 2.0**-538
# A chunk's plain sums of squares are trusted when they land in [FAST_LO, FAST_HI]: at most
# CHUNK squares below TSML**2 can have underflowed, 2**-50 of FAST_LO, and FAST_HI = TBIG**2
# keeps Blue's middle accumulator from overflowing however many chunks are added.
CHUNK = 4096
FAST_LO = 2.0**-960
FAST_HI = 2.0**972


def signature(name: str):
    """The explicit numba signatures of the kernels that take a user function."""
    flat = types.Array(types.float64, 1, "C")
    if name == "flat_f64":
        f_type = types.FunctionType(types.float64(flat))
        return types.void(
            f_type,
            flat,
            types.Array(types.int64, 1, "C"),
            types.Array(types.float64, 2, "C"),
            types.Array(types.float64, 2, "C"),
            types.int64,
        )
    raise KeyError(name)


def evaluate_flat(f, theta, idx, values, out, nchunks):
    """out[j, k] = f(theta with theta[idx[j]] = values[j, k]).

    Coordinates are split into ``nchunks`` contiguous chunks; each chunk perturbs its own copy
    of ``theta`` in place and restores the saved entry exactly, so no copy is made per
    coordinate and the chunks share nothing.
    """
    m = idx.shape[0]
    for c in prange(nchunks):
        lo = c * m // nchunks
        hi = (c + 1) * m // nchunks
        work = theta.copy()
        for j in range(lo, hi):
            i = idx[j]
            for k in range(values.shape[1]):
                work[i] = values[j, k]
                out[j, k] = f(work)
            work[i] = theta[i]


def build_batch(theta, idx, values, start, out):
    """Row r of ``out`` is theta with coordinate idx[j] set to values[j, k], (j, k) = the
    (start + r)-th pair in row-major order of ``values``.
    """
    n_values = values.shape[1]
    for r in prange(out.shape[0]):
        q = start + r
        j = q // n_values
        out[r, :] = theta
        out[r, idx[j]] = values[j, q - j * n_values]


@helper
def _blue_add(x, acc):
    ax = abs(x)
    if ax > TBIG:
        acc[2] += (ax * SBIG) ** 2
    elif ax < TSML:
        if acc[2] == 0.0:
            acc[0] += (ax * SSML) ** 2
    else:
        # NaN lands here too and propagates through the middle accumulator.
        acc[1] += ax * ax


@helper
def _blue_finish(acc):
    asml, amed, abig = acc[0], acc[1], acc[2]
    if amed != amed:
        return amed
    if abig > 0.0:
        return math.sqrt(abig + (amed * SBIG) * SBIG) / SBIG
    if asml > 0.0:
        ys = math.sqrt(asml) / SSML
        if amed > 0.0:
            ym = math.sqrt(amed)
            hi = max(ym, ys)
            lo = min(ym, ys)
            return hi * math.sqrt(1.0 + (lo / hi) ** 2)
        return ys
    return math.sqrt(amed)


def segment_norms(a, b, offsets, out):
    """out[s] = (||a||, ||b||, ||a - b||) over a[offsets[s]:offsets[s + 1]], in one pass.

    Plain float64 sums of squares per chunk of CHUNK elements; a chunk whose sums leave the
    safe range (huge, tiny, zero, inf or NaN entries) is summed again with Blue's scaling.
    """
    acc = np.zeros((3, 3))
    for s in range(offsets.shape[0] - 1):
        acc[:, :] = 0.0
        lo = offsets[s]
        hi = offsets[s + 1]
        for c0 in range(lo, hi, CHUNK):
            c1 = min(c0 + CHUNK, hi)
            sa = 0.0
            sb = 0.0
            sd = 0.0
            for i in range(c0, c1):
                x = a[i]
                y = b[i]
                t = x - y
                sa += x * x
                sb += y * y
                sd += t * t
            if FAST_LO <= sa <= FAST_HI and FAST_LO <= sb <= FAST_HI and sd <= FAST_HI:
                acc[0, 1] += sa
                acc[1, 1] += sb
                acc[2, 1] += sd
            else:
                for i in range(c0, c1):
                    _blue_add(a[i], acc[0])
                    _blue_add(b[i], acc[1])
                    _blue_add(a[i] - b[i], acc[2])
        for r in range(3):
            out[s, r] = _blue_finish(acc[r])
