"""numba kernels: plain loops over arrays the caller allocated.

They never validate input or read settings; ``_jit.compiled`` decides how they are compiled.
Each takes and fills arrays whose shapes the calling engine guarantees.
"""

from __future__ import annotations

from numba import prange


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
