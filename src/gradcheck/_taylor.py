"""The Taylor test: how fast the first-order remainder falls, not how small it is.

Along a direction ``d`` the remainder ``r(h) = |f(x + h d) - f(x) - h <g, d>|`` is
``O(h^2)`` when ``g`` is the gradient and ``O(h)`` when it is not, whatever the scale of
``f`` or of the error; with a Hessian-vector product ``H d`` the second-order remainder
``r(h) - h^2/2 <d, H d>`` falls like ``h^3``. The observed rate (the log-log slope of the
remainder between steps) is the verdict, and no threshold on the remainder is needed.

The rate is only observed between two regimes: at large steps higher-order terms bend it,
at small ones the remainder sinks into the rounding of ``f``. The sweep here halves the
step from a relative ``h = 0.5`` until the remainder is at rounding, and the converging
range is the smallest-step window where consecutive rates agree; when there is none (a
loss whose changes are below its rounding, a kink), it says so instead of guessing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _layout, _noise, _options, _policy, _problem
from ._results import Verdict
from ._taylor_results import TaylorDirection, TaylorTest

# The directions come from a stream of their own, keyed off the seed (as the cotangents of
# check_vjp are): "tay".
TAYLOR_STREAM = 0x746179


def taylor_test(
    f: Callable[[Any], Any],
    params: Any,
    grad: Any,
    *,
    directions: int = 1,
    hvp: Callable[[Any, Any], Any] | None = None,
    steps: Any = None,
    seed: int | None = None,
) -> TaylorTest:
    """The Taylor test: the rate at which the first-order remainder falls with the step.

    Along a random direction ``d`` the remainder
    ``r(h) = |f(x + h d) - f(x) - h <grad, d>|`` falls like ``h^2`` when ``grad`` is the
    gradient of ``f`` and like ``h`` when it is not. The test halves ``h`` from 0.5 until
    the remainder reaches the rounding of ``f``, finds the range of steps where the rate
    has settled, and judges the rate, not the size of the remainder: it needs no threshold.

    Parameters
    ----------
    f : callable
        The loss: ``f(params)`` returns one real number (as for :func:`gradcheck.check`).
    params : ndarray, or dict / list / tuple (nested) of ndarrays
        The point; copied, never modified. Blocks are named as ``check`` names them.
    grad : same structure as ``params``, flat array, or callable
        The gradient under test, as ``check`` takes it (``grad(params)`` when callable).
    directions : int
        How many random directions over all the parameters; one more per block is added
        when there are several blocks, so that a wrong block is named.
    hvp : callable, optional
        ``hvp(params, v)`` returns the Hessian of ``f`` times ``v`` (the structure of
        ``params``): the second-order remainder ``r(h) - h^2/2 <d, H d>`` is then tested,
        and a right ``hvp`` (with a right ``grad``) gives rate 3.
    steps : array_like, optional
        Relative steps to use instead of the sweep (all of them are evaluated).
    seed : int, optional
        Seeds the directions; drawn when None and recorded in the result.

    Returns
    -------
    TaylorTest
        ``verdict`` ("pass" when every direction's rate is the expected order within 0.3,
        "fail" when one is an order lower, "inconclusive" when no range converged or a
        rate matches neither), ``directions`` (steps, remainders, rates, the range and its
        rate, a reason), ``rates``, ``failing``, ``blocks``, ``nfev``, ``to_dict()``,
        ``plot()`` and a readable ``str``.

    Raises
    ------
    TypeError
        ``f``, ``grad`` or ``hvp`` of the wrong kind, or ``f`` not returning a number.
    ValueError
        A bad ``directions``, ``steps`` or ``seed``, or non-finite params or gradient.

    Notes
    -----
    The rate is the least-squares log-log slope over the range: ``TAYLOR_WINDOW`` + 1
    consecutive steps whose pairwise rates agree within 0.2, every remainder 100 rounding
    units above ``f``'s rounding, taken at the smallest steps where that holds (the most
    asymptotic). A rate near 1 is checked for a kink before it fails: there the even part
    ``(f(x + h d) + f(x - h d)) / 2 - f(x)`` falls like ``h`` too, where a smooth ``f``
    makes it ``O(h^2)``.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> x = np.array([0.3, -1.2, 2.0])
    >>> result = gradcheck.taylor_test(lambda x: np.sum(np.sin(x)), x, np.cos(x), seed=0)
    >>> result.verdict, round(result.rates["whole"], 1)
    ('pass', 2.0)
    """
    started = time.perf_counter()
    count = _count(directions)
    given = None if steps is None else _steps(steps)
    seed = _seed(seed)
    problem = _setup(f, params, grad, hvp)
    evaluate = _Evaluator(f, problem)
    drawn = _draw(problem, count, seed)
    problem = replace(problem, noise=_noise_level(problem, evaluate, drawn[0][2]))
    results = [_direction(problem, evaluate, name, block, d, given) for name, block, d in drawn]
    order = 2 if hvp is None else 3
    verdict = Verdict.worst(r.verdict for r in results)
    return TaylorTest(
        str(verdict), order, tuple(results), evaluate.nfev, seed, time.perf_counter() - started
    )


# --- setup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """What every direction shares: the point, the gradient, ``f(x)`` and its rounding."""

    layout: _layout.Layout
    x: np.ndarray  # the point in its own dtype (what f gets)
    x64: np.ndarray  # ... widened
    g: np.ndarray  # the gradient under test, float64
    f0: float
    unit: float  # the rounding unit of f's value
    hvp: Callable[[Any, Any], Any] | None
    noise: float = 0.0  # f's rounding noise near x, measured (ECnoise): a sum's, not u |f|


def _setup(f, params, grad, hvp) -> _Problem:
    if not callable(f):
        raise TypeError(f"`f` must be callable, got {type(f).__name__}: {f!r:.80}")
    if hvp is not None and not callable(hvp):
        raise TypeError(f"`hvp` must be callable or None, got {type(hvp).__name__}: {hvp!r:.80}")
    if grad is None:
        raise TypeError("`grad` is required: the gradient (or a callable) under test")
    layout, x = _layout.build(params)
    x.flags.writeable = False
    if callable(grad):
        grad = grad(layout.structure(x.copy()))
    g = layout.flatten(grad, what="grad")
    if not np.isfinite(g).all():
        i = int(np.flatnonzero(~np.isfinite(g))[0])
        raise ValueError(f"`grad` must be finite, but {layout.entry_name(i)} is {g[i]!r}")
    f0, dtype = _problem.loss_value(f(layout.structure(x.copy())))
    if not math.isfinite(f0):
        raise ValueError(f"`f` must be finite at params, got {f0!r}")
    # The step is taken exactly (the remainder uses the step the params' dtype allows), so
    # only f's rounding limits the remainder: its value's dtype, and the noise measured.
    unit = float(np.finfo(dtype).eps)
    return _Problem(layout, x, x.astype(np.float64), g, f0, unit, hvp)


def _count(directions: Any) -> int:
    count = _options.integer("directions", directions)
    assert count is not None  # not optional: None is refused
    return count


def _steps(steps: Any) -> np.ndarray:
    arr = np.asarray(steps, dtype=np.float64).reshape(-1)
    least = _policy.TAYLOR_WINDOW + 1
    if arr.size < least or not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(
            f"`steps` must be at least {least} positive finite numbers (a rate needs a "
            f"range of them), got {steps!r:.80}"
        )
    return np.sort(arr)[::-1]


def _seed(seed: Any) -> int:
    given = _options.seed(seed)
    return int(np.random.default_rng().integers(2**63)) if given is None else given


def _draw(problem: _Problem, count: int, seed: int) -> list[tuple[str, str | None, np.ndarray]]:
    """The directions: ``count`` over everything, then one per block when there are several.

    Each is standard normal, scaled entrywise by ``max(1, |x|)`` so that a step ``h`` moves
    every entry by about ``h`` of its own size, and drawn from its own seeded stream.
    """
    layout = problem.layout
    scale = np.maximum(1.0, np.abs(problem.x64))
    out: list[tuple[str, str | None, np.ndarray]] = []
    for k in range(count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(TAYLOR_STREAM, k)))
        name = "whole" if count == 1 else f"whole {k + 1}"
        out.append((name, None, rng.standard_normal(layout.n) * scale))
    blocks = [b for b in layout.blocks if b.size]
    if len(blocks) > 1:
        for j, b in enumerate(blocks):
            key = (TAYLOR_STREAM, count + j)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
            d = np.zeros(layout.n)
            part = slice(b.offset, b.offset + b.size)
            d[part] = rng.standard_normal(b.size) * scale[part]
            out.append((b.name, b.name, d))
    return out


def _noise_level(problem: _Problem, evaluate, d: np.ndarray) -> float:
    """The rounding noise of f near x along ``d``; 0 when no spacing gives a reading.

    ECnoise (as ``check`` reads f's noise) on the signed remainders
    ``f(x + t d) - f(x) - <g, t d>`` at 9 equally spaced ``t``: its differences of high
    order cancel the smooth part, linear and quadratic trends included, and leave the
    noise. A long sum's noise is that of its terms, which ``u |f|`` misses when they cancel
    (a loss near 0). The remainders are shifted away from 0 first: ECnoise refuses a line
    whose values vary by more than a tenth of their size, and a shift changes no difference.
    """
    points = _policy.NOISE_POINTS
    spacing = _policy.NOISE_FIRST_SPACING.get(np.dtype(problem.x.dtype), 1e-9)
    for _ in range(_policy.NOISE_ATTEMPTS):
        values = []
        for k in (np.arange(points) - points // 2).tolist():
            point, delta = _point(problem, d, spacing * k)
            value = problem.f0 if k == 0 else evaluate(point)
            values.append(value - problem.f0 - float(problem.g @ delta))
        size = max(abs(v) for v in values)
        if not math.isfinite(size):
            return 0.0
        level, verdict = _noise.ecnoise([v + _policy.TAYLOR_NOISE_SHIFT * size for v in values])
        if verdict == "ok":
            assert level is not None, "ecnoise gives a level with 'ok'"
            return float(level)
        if verdict == "too small":
            spacing *= _policy.NOISE_RESPACE
        else:
            spacing /= _policy.NOISE_RESPACE
    return 0.0


class _Evaluator:
    """Calls ``f`` at points of the params' dtype, on a private buffer; counts the calls."""

    def __init__(self, f, problem: _Problem):
        self.f = f
        self.layout = problem.layout
        self.work = np.empty_like(problem.x)
        self.nfev = 0

    def __call__(self, point: np.ndarray) -> float:
        self.work[:] = point
        self.nfev += 1
        return _problem.loss_value(self.f(self.layout.structure(self.work)))[0]


# --- one direction ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sweep:
    steps: np.ndarray
    values: np.ndarray  # f(x + h d)
    remainders: np.ndarray
    floor: np.ndarray


def _direction(problem, evaluate, name, block, d, given) -> TaylorDirection:
    quad = 0.0
    if problem.hvp is not None:
        hd = problem.hvp(
            problem.layout.structure(problem.x.copy()), problem.layout.structure(d.copy())
        )
        quad = 0.5 * float(d @ problem.layout.flatten(hd, what="hvp(params, v)"))
    sweep = _sweep(problem, evaluate, d, quad, given)
    above = np.isfinite(sweep.remainders) & (sweep.remainders > sweep.floor)
    rates = _rates(sweep.steps, sweep.remainders, above)
    found = _window(rates)
    order = 2 if problem.hvp is None else 3
    rate = resolution = math.nan
    if found is None:
        verdict, reason = _no_range(problem, evaluate, d, sweep, above)
    else:
        lo, hi = found
        rate = _fit(sweep.steps[lo : hi + 1], sweep.remainders[lo : hi + 1])
        verdict, reason = _judge(rate, order)
        slope = abs(float(problem.g @ d))
        if slope > 0:
            resolution = float(sweep.remainders[hi] / (sweep.steps[hi] * slope))
        kink = None
        if verdict == Verdict.FAIL and order == 2:
            kink = _kink(problem, evaluate, d, sweep, list(range(lo, hi + 1)))
        if kink:
            verdict, reason = Verdict.INCONCLUSIVE, f"no converging range: {kink}"
    return TaylorDirection(
        name=name,
        block=block,
        steps=sweep.steps,
        remainders=sweep.remainders,
        floor=sweep.floor,
        rates=rates,
        range=found,
        rate=rate,
        verdict=str(verdict),
        reason=reason,
        resolution=resolution,
    )


def _point(problem: _Problem, d: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """``x + h d`` in the params' dtype, and the step actually taken (in float64)."""
    point = (problem.x64 + h * d).astype(problem.x.dtype)
    return point, point.astype(np.float64) - problem.x64


def _sweep(problem: _Problem, evaluate, d: np.ndarray, quad: float, given) -> _Sweep:
    """The remainders at halved steps from TAYLOR_FIRST_STEP until they sit at rounding for
    TAYLOR_STOP_AFTER steps in a row (or at every ``given`` step).
    """
    if given is None:
        first, ratio = _policy.TAYLOR_FIRST_STEP, _policy.TAYLOR_RATIO
        candidates = (first / ratio**k for k in range(_policy.TAYLOR_MOST_STEPS))
    else:
        candidates = iter(given.tolist())
    steps, values, remainders, floor = [], [], [], []
    at_rounding = 0
    for h in candidates:
        point, delta = _point(problem, d, h)
        if not delta.any():
            break  # the step no longer moves any entry: below the params' resolution
        value = evaluate(point)
        # The linear term on the step actually taken: a float32 point rounds x + h d.
        r = abs(value - problem.f0 - float(problem.g @ delta) - h * h * quad)
        level = _floor(problem, value)
        steps.append(h)
        values.append(value)
        remainders.append(r if math.isfinite(r) else math.nan)
        floor.append(level)
        if math.isfinite(r):
            at_rounding = at_rounding + 1 if r <= level else 0
        if given is None and at_rounding >= _policy.TAYLOR_STOP_AFTER:
            break
    return _Sweep(*(np.array(a, dtype=np.float64) for a in (steps, values, remainders, floor)))


def _floor(problem: _Problem, value: float) -> float:
    """The rounding level of a remainder that subtracts ``f(x)`` from ``value``."""
    rounding = max(problem.noise, problem.unit * max(abs(problem.f0), abs(value)))
    return _policy.TAYLOR_FLOOR * rounding


def _rates(steps: np.ndarray, remainders: np.ndarray, above: np.ndarray) -> np.ndarray:
    """The rate between each pair of consecutive steps; NaN where either is at rounding."""
    rates = np.full(max(0, steps.size - 1), math.nan)
    for k in range(rates.size):
        if above[k] and above[k + 1]:
            rates[k] = math.log(remainders[k] / remainders[k + 1]) / math.log(
                steps[k] / steps[k + 1]
            )
    return rates


def _window(rates: np.ndarray) -> tuple[int, int] | None:
    """The steps ``(lo, hi)`` of the smallest-step window of TAYLOR_WINDOW rates that agree
    within TAYLOR_RATE_BAND and fall at least TAYLOR_RATE_LEAST; None when there is none.
    """
    width = _policy.TAYLOR_WINDOW
    for start in range(rates.size - width, -1, -1):
        w = rates[start : start + width]
        if not np.isfinite(w).all():
            continue
        if w.max() - w.min() <= _policy.TAYLOR_RATE_BAND and w.min() >= _policy.TAYLOR_RATE_LEAST:
            return start, start + width
    return None


def _fit(steps: np.ndarray, remainders: np.ndarray) -> float:
    """The least-squares slope of log remainder against log step."""
    return float(np.polyfit(np.log(steps), np.log(remainders), 1)[0])


def _judge(rate: float, order: int) -> tuple[Verdict, str]:
    band = _policy.TAYLOR_VERDICT_BAND
    what = "gradient" if order == 2 else "Hessian-vector product"
    if abs(rate - order) <= band:
        return Verdict.PASS, f"the remainder falls like h^{order}: the {what} is right"
    if rate > order:
        return Verdict.PASS, (
            f"the remainder falls faster than h^{order} (rate {rate:.2f}): the next "
            "derivative of f vanishes along this direction"
        )
    if rate <= order - 1 + band:
        if order == 3 and rate <= 1 + band:
            culprit = "the gradient is wrong"
        else:
            culprit = f"the {what} is wrong"
        return Verdict.FAIL, f"the remainder falls like h^{rate:.2f}, not h^{order}: {culprit}"
    return Verdict.INCONCLUSIVE, (
        f"the rate {rate:.2f} matches neither {order} (right) nor {order - 1} (wrong): is f "
        "smooth here?"
    )


def _no_range(problem, evaluate, d, sweep: _Sweep, above: np.ndarray) -> tuple[Verdict, str]:
    """The verdict and reason when no window of rates converged."""
    if not sweep.steps.size:
        return Verdict.INCONCLUSIVE, "no converging range: no step moves the parameters"
    finite = np.isfinite(sweep.values)
    if not finite.any():
        return Verdict.INCONCLUSIVE, "no converging range: f is not finite at any step"
    span = f"h = {sweep.steps[0]:.1e} to {sweep.steps[-1]:.1e}"
    if not above.any():
        moved = np.abs(sweep.values[finite] - problem.f0) > sweep.floor[finite]
        if moved.any():
            return Verdict.PASS, (
                f"the remainder stays at rounding at every step ({span}) while f changes "
                "above it: f is linear along this direction and the gradient matches it"
            )
        return Verdict.INCONCLUSIVE, (
            f"no converging range: f does not change above its rounding "
            f"(~{float(np.max(sweep.floor)):.1e}) at any step ({span}); the loss is at "
            "machine precision along this direction (scale it, or evaluate in float64)"
        )
    kink = _kink(problem, evaluate, d, sweep, list(np.flatnonzero(above)))
    if kink:
        return Verdict.INCONCLUSIVE, f"no converging range: {kink}"
    shown = ", ".join(f"{r:.2f}" for r in _rates(sweep.steps, sweep.remainders, above) if r == r)
    return Verdict.INCONCLUSIVE, (
        f"no converging range: the remainder is above rounding at {int(above.sum())} of "
        f"{sweep.steps.size} steps ({span}) but its rates never settle ({shown or 'none'})"
    )


def _kink(problem, evaluate, d, sweep: _Sweep, where: list[int]) -> str | None:
    """A sentence when the remainder at steps ``where`` is a kink's, else None.

    The even part ``|f(x + h d) + f(x - h d) - 2 f(x)| / 2`` of a smooth ``f`` is
    ``O(h^2)`` and a wrong gradient leaves it alone; at a kink it falls like ``h`` and
    carries a share of the remainder. It costs one evaluation at ``x - h d`` per step.
    """
    steps, even = [], []
    for k in where:
        h = float(sweep.steps[k])
        minus = evaluate(_point(problem, -d, h)[0])
        e = abs(sweep.values[k] + minus - 2 * problem.f0) / 2
        level = _floor(problem, minus)
        if math.isfinite(e) and e > level and e >= _policy.TAYLOR_KINK_SHARE * sweep.remainders[k]:
            steps.append(h)
            even.append(e)
    if len(steps) < 2:
        return None
    rate = _fit(np.array(steps), np.array(even))
    if rate > 2 - _policy.TAYLOR_KINK_RATE:
        return None
    return (
        f"f has a kink along this direction: its even part (f(x+hd) + f(x-hd))/2 - f(x) "
        f"falls like h^{rate:.2f} (a smooth f: h^2) and is a share of the remainder, so the "
        "remainder's rate says nothing about the gradient"
    )
