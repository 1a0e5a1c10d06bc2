"""Norms: overflow- and underflow-safe 2-norms per segment, and the relative difference.

One fused pass gives ||a||, ||b|| and ||a - b|| per segment, accumulated in float64 with
power-of-two scaling (Blue / Anderson, ACM TOMS Algorithm 978): ``np.linalg.norm``
overflows past ~1e154.
"""

from __future__ import annotations

import math

import numpy as np

from . import _jit, _norm_kernel

# Up to this many entries, norms run as plain Python rather than through numba.
PY_NORMS = 1 << 15
# Scale that brings overflowing norms back into range (exact: a power of two).
DOWN = 2.0**-64


def segment_norms(a: np.ndarray, b: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(||a||, ||b||, ||a - b||) per segment, float64, overflow- and underflow-safe."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    out = np.empty((offsets.size - 1, 3))
    if (a.size <= PY_NORMS and not _jit.is_compiled("segment_norms")) or _jit.jit_disabled():
        # Small inputs: the same loop in Python floats (same IEEE arithmetic, same bits)
        # costs less than compiling the kernel or loading it from numba's cache, whether
        # numba is loaded or not (a user's jitted f loads it); once compiled, the kernel is
        # the cheaper one.
        # With the JIT disabled the kernel is this loop, run on Python floats all the same
        # (numpy scalars would warn where the floats overflow by design).
        _norm_kernel.segment_norms(a.tolist(), b.tolist(), offsets.tolist(), out)
    else:
        kernel = _jit.compiled("segment_norms")
        kernel(a, b, np.ascontiguousarray(offsets, dtype=np.int64), out)
    return out


def segment_differences(a: np.ndarray, b: np.ndarray, offsets: np.ndarray):
    """Norms per segment (as ``segment_norms``) and the relative difference of each."""
    norms = segment_norms(a, b, offsets)
    diffs = np.array([ratio(nd, na, nb) for na, nb, nd in norms])
    # A norm overflows only when entries near 1e308 add up past the largest float; the ratio
    # is scale-free, so take it from the vectors scaled down by an exact power of two.
    for s in np.flatnonzero(np.isinf(norms).any(axis=1)):
        lo, hi = offsets[s], offsets[s + 1]
        if np.isfinite(a[lo:hi]).all() and np.isfinite(b[lo:hi]).all():
            scaled = segment_norms(a[lo:hi] * DOWN, b[lo:hi] * DOWN, np.array([0, hi - lo]))
            diffs[s] = ratio(scaled[0, 2], scaled[0, 0], scaled[0, 1])
    return norms, diffs


def rms(a: np.ndarray) -> float:
    """The root mean square of ``a``, scaled by its largest entry so that the squares
    neither overflow nor underflow (0 when empty; NaN or inf when ``a`` holds one).
    """
    if a.size == 0:
        return 0.0
    if not np.isfinite(a).all():
        return math.nan if np.isnan(a).any() else math.inf
    big = float(np.max(np.abs(a)))
    if big == 0:
        return 0.0
    return big * float(np.sqrt(np.mean(np.square(a / big))))


def ratio(norm_error: float, norm_a: float, norm_b: float) -> float:
    """||a - b|| / (||a|| + ||b||): 0 when both are zero, NaN when anything is NaN."""
    norm_error, norm_a, norm_b = float(norm_error), float(norm_a), float(norm_b)
    total = norm_a + norm_b
    if total == 0.0:
        return 0.0 if norm_error == 0.0 else math.nan
    if total == math.inf and norm_a < math.inf and norm_b < math.inf:
        d = (0.5 * norm_error) / (0.5 * norm_a + 0.5 * norm_b)
    else:
        d = norm_error / total
    # The triangle inequality bounds d by 1; only rounding could push it past.
    return min(d, 1.0) if d == d else d


def relative_difference(a, b) -> float:
    """Relative difference ``||a - b|| / (||a|| + ||b||)`` of two arrays.

    Symmetric in its arguments, bounded in [0, 1], unchanged when both are scaled by the same
    nonzero factor; use it when neither side is known to be right.

    Parameters
    ----------
    a, b : array_like
        Real arrays of the same shape.

    Returns
    -------
    float
        0 when both are zero, 1 when exactly one is zero or they point in opposite
        directions, NaN when either holds a NaN. Norms are accumulated in float64 with
        power-of-two scaling, so entries near 1e300 or 1e-300 give the right answer.

    Examples
    --------
    >>> relative_difference([1.0, 2.0], [1.0, 2.0])
    0.0
    >>> relative_difference([1.0, 0.0], [-1.0, 0.0])
    1.0
    """
    x, y = _pair(a, b, ("a", "b"))
    return float(segment_differences(x, y, np.array([0, x.size]))[1][0])


def relative_change(a, reference) -> float:
    """Relative change ``||a - reference|| / ||reference||`` from a trusted reference.

    Use it when one side is known to be right (say, a gradient from a verified
    implementation); it is not symmetric and is unbounded.

    Parameters
    ----------
    a, reference : array_like
        Real arrays of the same shape.

    Returns
    -------
    float
        0 when both are zero, ``inf`` when only the reference is zero.

    Examples
    --------
    >>> relative_change([1.1, 0.0], [1.0, 0.0])  # doctest: +ELLIPSIS
    0.100000...
    """
    x, y = _pair(a, reference, ("a", "reference"))
    _, nref, nd = segment_norms(x, y, np.array([0, x.size]))[0]
    if np.isinf([nd, nref]).any() and np.isfinite(x).all() and np.isfinite(y).all():
        _, nref, nd = segment_norms(x * DOWN, y * DOWN, np.array([0, x.size]))[0]
    nd, nref = float(nd), float(nref)
    if nd == 0.0:
        return 0.0
    if nref == 0.0:
        return math.inf
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float64(nd) / nref)


def _pair(a, b, names) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for value, name in zip((a, b), names, strict=True):
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"`{name}` must be a real array, got {value!r:.80}") from exc
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"`{name}` must be a real array, got dtype {arr.dtype}: {value!r:.80}")
        arrays.append(arr)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same shape, got "
            f"{arrays[0].shape} and {arrays[1].shape}"
        )
    return (arrays[0].astype(np.float64).reshape(-1), arrays[1].astype(np.float64).reshape(-1))
