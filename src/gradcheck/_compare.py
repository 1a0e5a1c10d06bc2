"""Compare: safe norms, relative differences, verdicts per block and per entry.

The verdict is taken per block and the global verdict is the worst of them: a global norm
dilutes one bad block (one wrong coordinate among 1e6 moves it by only ~5e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _jit, _norm_kernel
from ._estimate import Estimate
from ._layout import Layout
from ._plan import Plan, coarser

# (pass at or below, fail above) for the relative difference, by the coarser of the
# parameter and loss dtypes; between the two the verdict is "warn".
THRESHOLDS = {np.dtype(np.float64): (1e-7, 1e-5), np.dtype(np.float32): (1e-3, 1e-2)}
# Per-entry score: |a - b| / (RTOL * (|a| + |b|) + NOISE * u * |f0| / h), flagged above 1.
RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3}
NOISE = 10.0
# How many of the worst entries a report keeps.
WORST = 10
# Up to this many entries, norms run as plain Python rather than through numba.
PY_NORMS = 1 << 15
# Scale that brings overflowing norms back into range (exact: a power of two).
DOWN = 2.0**-64
# Severity order of verdicts, mildest first.
ORDER = ("pass", "warn", "inconclusive", "fail")


@dataclass(frozen=True)
class Entry:
    """One checked coordinate, named like ``W1[3, 2]``."""

    name: str
    block: str
    analytic: float
    numeric: float
    abs_error: float
    score: float  # above 1: the entry disagrees beyond rounding and the relative tolerance


@dataclass(frozen=True)
class BlockResult:
    """The check of one parameter block."""

    name: str
    shape: tuple[int, ...]
    checked: int
    difference: float
    verdict: str
    norm_analytic: float
    norm_numeric: float
    norm_error: float
    max_abs_error: float
    max_abs_error_at: str | None
    nonfinite: tuple[str, ...]  # entries where f was not finite at a perturbed point


@dataclass(frozen=True)
class Comparison:
    difference: float
    verdict: str
    tol: tuple[float, float]
    blocks: tuple[BlockResult, ...]
    worst: tuple[Entry, ...]


def segment_norms(a: np.ndarray, b: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(||a||, ||b||, ||a - b||) per segment, float64, overflow- and underflow-safe."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    out = np.empty((offsets.size - 1, 3))
    if a.size <= PY_NORMS:
        # Small inputs: the same loop in Python floats (same IEEE arithmetic, same bits)
        # costs less than loading numba and the compiled kernel.
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


def judge(difference: float, tol: tuple[float, float]) -> str:
    # Written so that NaN fails: `d > tol` would be False for NaN.
    if not difference <= tol[1]:
        return "fail"
    return "pass" if difference <= tol[0] else "warn"


def compare(
    layout: Layout,
    plan: Plan,
    est: Estimate,
    analytic: np.ndarray,
    *,
    f0: float,
    loss_dtype: np.dtype,
    tol,
) -> Comparison:
    """Judge ``analytic`` (aligned with ``plan.idx``) against the finite differences."""
    dtype = coarser(layout.dtype, loss_dtype)
    tol = THRESHOLDS[dtype] if tol is None else tol
    ok = ~est.bad
    idx, a, b = plan.idx[ok], analytic[ok], est.gradapprox[ok]
    seg = np.searchsorted(idx, layout.offsets)
    norms, diffs = segment_differences(a, b, seg)
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(a - b)
    seg_all = np.searchsorted(plan.idx, layout.offsets)
    blocks = []
    for k, block in enumerate(layout.blocks):
        lo, hi = seg[k], seg[k + 1]
        na, nb, nd = norms[k]
        skipped = plan.idx[seg_all[k] : seg_all[k + 1]][est.bad[seg_all[k] : seg_all[k + 1]]]
        if hi > lo:
            d = diffs[k]
            verdict = judge(d, tol)
            if skipped.size and verdict != "fail":
                verdict = "inconclusive"
        else:
            # Nothing judged: every point was non-finite, or the block is empty.
            d = float("nan") if skipped.size else 0.0
            verdict = "inconclusive" if skipped.size else "pass"
        at = None
        max_err = float("nan")
        if hi > lo:
            j = lo + _argmax_nan_first(err[lo:hi])
            max_err, at = float(err[j]), block.entry_name(int(idx[j]))
        blocks.append(
            BlockResult(
                name=block.name,
                shape=block.shape,
                checked=int(hi - lo),
                difference=float(d),
                verdict=verdict,
                norm_analytic=float(na),
                norm_numeric=float(nb),
                norm_error=float(nd),
                max_abs_error=max_err,
                max_abs_error_at=at,
                nonfinite=tuple(block.entry_name(int(i)) for i in skipped[:WORST]),
            )
        )
    # The global numbers get a pass of their own rather than a hypot of the block norms, so
    # that a check set up like the classic exercise reproduces its digits.
    difference = segment_differences(a, b, np.array([0, a.size]))[1][0] if a.size else math.nan
    verdict = max((blk.verdict for blk in blocks), key=ORDER.index)
    u = np.finfo(dtype).eps / 2
    noise = NOISE * u * abs(f0) / plan.step[ok]
    worst = _worst(layout, idx, a, b, err, RTOL[dtype] * (np.abs(a) + np.abs(b)) + noise)
    return Comparison(float(difference), verdict, tol, tuple(blocks), worst)


def _argmax_nan_first(x: np.ndarray) -> int:
    nan = np.flatnonzero(np.isnan(x))
    return int(nan[0]) if nan.size else int(np.argmax(x))


def _worst(layout, idx, a, b, err, allowed) -> tuple[Entry, ...]:
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(err == 0, 0.0, err / allowed)
    score = np.where(np.isnan(score), np.inf, score)
    k = min(WORST, score.size)
    if k == 0:
        return ()
    top = np.argpartition(-score, k - 1)[:k] if score.size > k else np.arange(score.size)
    top = top[np.argsort(-score[top], kind="stable")]
    return tuple(
        Entry(
            name=layout.entry_name(int(idx[j])),
            block=layout.block_of(int(idx[j])).name,
            analytic=float(a[j]),
            numeric=float(b[j]),
            abs_error=float(err[j]),
            score=float(score[j]),
        )
        for j in top
    )


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
