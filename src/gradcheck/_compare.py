"""Compare: safe norms, relative differences, verdicts per block and per entry.

The verdict is taken per block and the global verdict is the worst of them: a global norm
dilutes one bad block (one wrong coordinate among 1e6 moves it by only ~5e-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import _jit, _norm_kernel
from ._estimate import Estimate
from ._layout import Layout
from ._plan import Plan, coarser

# (pass at or below, fail above) for the relative difference, by the coarser of the
# parameter and loss dtypes; between the two the verdict is "warn".
THRESHOLDS = {np.dtype(np.float64): (1e-7, 1e-5), np.dtype(np.float32): (1e-3, 1e-2)}
# The complex step subtracts nothing, so it is held to far tighter thresholds.
COMPLEX_THRESHOLDS = {np.dtype(np.float64): (1e-10, 1e-8), np.dtype(np.float32): (1e-5, 1e-3)}
# Per-entry score: |a - b| / (RTOL * (|a| + |b|) + NOISE * u * |f0| / h), flagged above 1.
RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3}
NOISE = 10.0
# The fail threshold is at least RESOLVE times the rounding-only difference e_pred; when that
# exceeds COARSEST, the difference a 5% error in every entry makes (0.05 / 2.05), such an
# error could pass and a block that does not fail is "inconclusive".
RESOLVE = 100.0
COARSEST = 0.05 / 2.05
# How many of the worst entries a report keeps.
WORST = 10
# Up to this many entries, norms run as plain Python rather than through numba.
PY_NORMS = 1 << 15
# Scale that brings overflowing norms back into range (exact: a power of two).
DOWN = 2.0**-64
# Severity order of verdicts, mildest first; UNTESTED marks a block left to the directions.
UNTESTED = "untested"
ORDER = (UNTESTED, "pass", "warn", "inconclusive", "fail")


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
    size: int
    checked: int  # coordinates checked one by one
    difference: float  # over the checked coordinates, or along the directions if none
    verdict: str
    norm_analytic: float
    norm_numeric: float
    norm_error: float
    max_abs_error: float
    max_abs_error_at: str | None
    nonfinite: tuple[str, ...]  # entries where f was not finite at a perturbed point
    tol: tuple[float, float] = (math.nan, math.nan)  # thresholds applied to this block
    kinks: int = 0  # entries left out of the verdict: they disagree only at a kink
    untested: int = 0  # entries where both sides lie below what the differences resolve
    diagnosis: str | None = None  # what a failing block's error looks like, in words
    directions: int = 0  # random directions checked
    direction_difference: float = math.nan
    localized: tuple[str, ...] = ()  # wrong entries found by the directional search

    def miss_probability(self, p: float = 0.01) -> float:
        """The chance that a bug touching a fraction ``p`` of this block's entries was in
        none of the checked coordinates (sampling without replacement).

        Coordinates only; random directions see every entry of the block.
        """
        bad = math.ceil(p * self.size)
        if self.checked > self.size - bad:
            return 0.0
        # C(n - bad, m) / C(n, m), in logs so that n in the millions does not overflow.
        n, m = self.size, self.checked
        log_p = (
            math.lgamma(n - bad + 1)
            - math.lgamma(n - bad - m + 1)
            - math.lgamma(n + 1)
            + math.lgamma(n - m + 1)
        )
        return math.exp(log_p)


@dataclass(frozen=True)
class Comparison:
    difference: float
    verdict: str
    tol: tuple[float, float]
    blocks: tuple[BlockResult, ...]
    worst: tuple[Entry, ...]
    adaptive: bool  # thresholds follow the rounding noise of f (no `tol` given)
    noise_f: float  # the assumed rounding noise of f


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


def judge(difference: float, tol: tuple[float, float], e_pred: float = 0.0) -> str:
    """The verdict on one relative difference; ``e_pred`` as from ``resolution``."""
    # Written so that NaN fails: `d > tol` would be False for NaN.
    if not difference <= tol[1]:
        return "fail"
    if RESOLVE * e_pred > COARSEST:
        return "inconclusive"  # rounding in f could hide a 5% error
    return "pass" if difference <= tol[0] else "warn"


def noise_level(f0: float, dtype: np.dtype) -> float:
    """How far rounding alone can move a computed value of f near ``f0``: u |f0|."""
    return float(np.finfo(dtype).eps / 2 * abs(f0))


def resolution(norm_error_bound: float, norm_a: float, norm_b: float) -> float:
    """e_pred: the relative difference that rounding alone could produce."""
    total = float(norm_a) + float(norm_b)
    if total == 0.0:
        return 0.0 if norm_error_bound == 0.0 else math.inf
    return float(norm_error_bound) / total


def adapt(tol: tuple[float, float], e_pred: float) -> tuple[float, float]:
    """Raise the default thresholds to what the arithmetic can resolve: 10 and 100 e_pred.

    A sum of a million terms rounds a million times: its finite differences cannot reach
    1e-7, and judging them by it would fail correct gradients.
    """
    return (max(tol[0], 10 * e_pred), max(tol[1], RESOLVE * e_pred))


def compare(
    layout: Layout,
    plan: Plan,
    est: Estimate,
    analytic: np.ndarray,
    *,
    f0: float,
    loss_dtype: np.dtype,
    tol,
    noise_f: float | None = None,
    kinks: np.ndarray | None = None,
    on_kink: np.ndarray | None = None,
) -> Comparison:
    """Judge ``analytic`` (aligned with ``plan.idx``) against the finite differences.

    ``kinks`` (bool, aligned with ``plan.idx``) marks entries shown to sit at or across a
    kink: they count in the global difference but not in any verdict. ``on_kink`` marks
    those of them that sit on one, whose analytic value was only seen to lie between the
    one-sided slopes; the others agreed at a smaller step.
    """
    dtype = coarser(layout.dtype, loss_dtype)
    adaptive = tol is None
    if tol is None:
        tol = (COMPLEX_THRESHOLDS if plan.method == "complex" else THRESHOLDS)[dtype]
    if noise_f is None:
        noise_f = noise_level(f0, dtype)
    # What noise in f alone can make each difference wrong by.
    fd_all = noise_f * est.sensitivity
    if plan.method == "complex":
        fd_all = fd_all + np.finfo(dtype).eps * np.abs(est.gradapprox)  # exact to rounding
    ok = ~est.bad
    judged = ok if kinks is None else ok & ~kinks
    idx, a, b, fd_error = plan.idx[judged], analytic[judged], est.gradapprox[judged], fd_all[judged]
    seg = np.searchsorted(idx, layout.offsets)
    norms, diffs = segment_differences(a, b, seg)
    fd_norms = segment_norms(fd_error, fd_error, seg)[:, 0]
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(a - b)
    score = scores(a, b, fd_error, dtype)
    # Entries where both sides are below what the differences resolve were not tested.
    untested = (np.abs(a) + np.abs(b)) < NOISE * fd_error
    seg_all = np.searchsorted(plan.idx, layout.offsets)
    blocks = []
    for k, block in enumerate(layout.blocks):
        lo, hi = seg[k], seg[k + 1]
        na, nb, nd = norms[k]
        mine = slice(seg_all[k], seg_all[k + 1])
        skipped = plan.idx[mine][est.bad[mine]]
        kinked = 0 if kinks is None else int((kinks[mine] & ok[mine]).sum())
        block_tol = tol
        note = None
        if hi > lo:
            d = diffs[k]
            e_pred = resolution(fd_norms[k], na, nb)
            block_tol = adapt(tol, e_pred) if adaptive else tol
            verdict = judge(d, block_tol, e_pred)
            if skipped.size and verdict != "fail":
                verdict = "inconclusive"
        elif skipped.size:
            d, verdict = math.nan, "inconclusive"  # every point was non-finite
        elif kinked:
            d, verdict = math.nan, "pass"  # every entry agreed once the step missed the kink
            if on_kink is not None and on_kink[mine][ok[mine]].sum() == kinked:
                # Lying between the one-sided slopes is all a value on a kink can show.
                verdict = "inconclusive"
                note = (
                    "every checked entry sits on a kink of f; its analytic values lie between "
                    "the one-sided slopes, which does not test them: check at another point"
                )
        else:
            # Not checked by coordinates: an empty block passes; otherwise directions judge.
            d, verdict = (0.0, "pass") if block.size == 0 else (math.nan, UNTESTED)
        if verdict == "fail":
            note = diagnose(block, idx[lo:hi], a[lo:hi], b[lo:hi])
        at = None
        max_err = math.nan
        if hi > lo:
            j = lo + _argmax_nan_first(err[lo:hi])
            max_err, at = float(err[j]), block.entry_name(int(idx[j]))
        blocks.append(
            BlockResult(
                name=block.name,
                shape=block.shape,
                size=block.size,
                checked=int(seg_all[k + 1] - seg_all[k] - skipped.size),
                difference=float(d),
                verdict=verdict,
                norm_analytic=float(na),
                norm_numeric=float(nb),
                norm_error=float(nd),
                max_abs_error=max_err,
                max_abs_error_at=at,
                nonfinite=tuple(block.entry_name(int(i)) for i in skipped[:WORST]),
                tol=block_tol,
                kinks=kinked,
                untested=int(untested[lo:hi].sum()),
                diagnosis=note,
            )
        )
    # The global numbers get a pass of their own rather than a hypot of the block norms, so
    # that a check set up like the classic exercise reproduces its digits; kinks count here.
    a_all, b_all = analytic[ok], est.gradapprox[ok]
    difference = (
        segment_differences(a_all, b_all, np.array([0, a_all.size]))[1][0]
        if a_all.size
        else math.nan
    )
    verdict = worst_verdict(blk.verdict for blk in blocks)
    worst = _worst(layout, idx, a, b, err, score)
    return Comparison(float(difference), verdict, tol, tuple(blocks), worst, adaptive, noise_f)


def scores(a: np.ndarray, b: np.ndarray, fd_error: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per-entry disagreement: |a - b| over what rounding and the relative tolerance allow.

    Above 1 an entry disagrees; NaN entries score inf.
    """
    allowed = RTOL[dtype] * (np.abs(a) + np.abs(b)) + NOISE * fd_error
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        err = np.abs(a - b)
        score = np.where(err == 0, 0.0, err / allowed)
    return np.where(np.isnan(score), np.inf, score)


def diagnose(block, idx: np.ndarray, a: np.ndarray, b: np.ndarray) -> str | None:
    """A plain-words guess at what is wrong with a failing block's gradient."""
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    top = max(float(np.abs(a).max()), float(np.abs(b).max()))
    if top > 0:
        # Scale both by one power of two so the dot products neither overflow nor underflow.
        a, b = np.ldexp(a, -np.frexp(top)[1]), np.ldexp(b, -np.frexp(top)[1])
    aa, bb, ab = float(a @ a), float(b @ b), float(a @ b)
    if bb == 0.0:
        return f"the numeric gradient of {block.name} is zero: does f use {block.name}?"
    if aa == 0.0:
        return f"the analytic gradient of {block.name} is zero: a missing term?"
    scale = ab / bb
    residual = math.sqrt(max(aa - 2 * scale * ab + scale * scale * bb, 0.0) / aa)
    if residual < 0.05 and abs(scale - 1) > 0.01:
        if abs(scale + 1) < 0.05:
            return f"sign flipped: {block.name} = -1.00 x numeric"
        return f"{block.name} = {scale:.2f} x numeric (a wrong factor)"
    shape = block.shape
    if len(shape) == 2 and shape[0] == shape[1] and idx.size == block.size:
        full_b = b.reshape(shape)
        if np.linalg.norm(a.reshape(shape) - full_b.T) < 0.05 * math.sqrt(aa):
            return f"transposed: {block.name} matches the numeric gradient transposed"
    return None


def _worst(layout, idx, a, b, err, score) -> tuple[Entry, ...]:
    k = min(WORST, score.size)
    if k == 0:
        return ()
    top = np.argpartition(-score, k - 1)[:k] if score.size > k else np.arange(score.size)
    top = top[np.argsort(-score[top], kind="stable")]
    entries = []
    for j in top.tolist():
        block = layout.block_of(int(idx[j]))
        entries.append(
            Entry(
                name=block.entry_name(int(idx[j])),
                block=block.name,
                analytic=float(a[j]),
                numeric=float(b[j]),
                abs_error=float(err[j]),
                score=float(score[j]),
            )
        )
    return tuple(entries)


def worst_verdict(verdicts) -> str:
    return max(verdicts, key=ORDER.index, default="pass")


def with_directions(comparison: Comparison, layout: Layout, results: list, k: int) -> Comparison:
    """Fold the per-block direction results (``_directions.DirectionResult``) in."""
    blocks = []
    for block, r in zip(comparison.blocks, results, strict=True):
        verdict = worst_verdict(v for v in (block.verdict, r.verdict) if v != UNTESTED)
        difference = block.difference if block.checked else r.difference
        blocks.append(
            replace(
                block,
                verdict=verdict,
                difference=difference,
                tol=block.tol if block.checked else r.tol,
                directions=k,
                direction_difference=r.difference,
                localized=tuple(layout.entry_name(i) for i in r.found),
                diagnosis=block.diagnosis or r.note,
            )
        )
    verdict = worst_verdict(b.verdict for b in blocks)
    difference = comparison.difference
    if not any(b.checked for b in blocks):
        # Directions only: the same metric over every block's directional derivatives.
        predicted = np.concatenate([r.predicted for r in results])
        numeric = np.concatenate([r.numeric for r in results])
        difference = segment_differences(predicted, numeric, np.array([0, numeric.size]))[1][0]
    return replace(comparison, blocks=tuple(blocks), verdict=verdict, difference=float(difference))


def _argmax_nan_first(x: np.ndarray) -> int:
    nan = np.flatnonzero(np.isnan(x))
    return int(nan[0]) if nan.size else int(np.argmax(x))


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
